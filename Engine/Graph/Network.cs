using Tp7.Engine.Devices;
using Tp7.Engine.Model;

namespace Tp7.Engine.Graph;

/// <summary>
/// A network on a device: its graph, its parameters in one block, one executor, and plans cached per request.
/// Forward passes of batches too big for the device's memory run in chunks (and say so through <see cref="Log"/>).
/// </summary>
public sealed class Network : IDisposable
{
    readonly Dictionary<string, ExecutionPlan> plans = [];

    public Graph Graph { get; }
    public ParameterStore Parameters { get; }
    public Executor Executor { get; }
    public ComputeDevice Device => Parameters.Device;
    public Action<string>? Log { get; set; }
    public LayerProfiler? Profiler { get => Executor.Profiler; set => Executor.Profiler = value; }

    public Network(ComputeDevice device, Graph graph)
    {
        Graph = graph;
        var unsupported = graph.Nodes.Where(n => !OpRegistry.Get(n.Op).Supports(device, n)).Select(n => $"{n.Name} ({n.Op})").ToList();
        if (unsupported.Count > 0)
            throw new NotSupportedException($"{device.Name} cannot run: {string.Join(", ", unsupported)}");
        Parameters = new ParameterStore(device, graph.Parameters);
        Executor = new Executor(Parameters);
    }

    public long ParameterBytes => 4 * Parameters.Count;

    /// <summary>A plan for the request, made once and cached.</summary>
    public ExecutionPlan Plan(PlanRequest request)
    {
        string key = $"{request.InputShape}|{string.Join(",", request.Outputs.Order())}|{request.Training}|{string.Join(",", (request.Trainable ?? new HashSet<string>()).Order())}|{string.Join(",", (request.GradientOutputs ?? []).Order())}|{request.NoFusion}";
        if (!plans.TryGetValue(key, out var plan))
        {
            if (plans.Count > 16) plans.Clear();
            plans[key] = plan = new ExecutionPlan(Graph, request);
        }
        return plan;
    }

    /// <summary>Memory the activations of a forward pass to <paramref name="outputs"/> need at this input shape.</summary>
    public long ActivationBytes(Shape inputShape, IReadOnlyCollection<string> outputs) => Plan(new PlanRequest(inputShape, outputs)).ArenaBytes;

    /// <summary>The largest batch whose activations fit beside the parameters (keeping 10 % of memory spare).</summary>
    public int MaxBatchThatFits(Shape sampleShape, IReadOnlyCollection<string> outputs)
    {
        long free = (long)(Device.MemoryBytes * 0.9) - ParameterBytes;
        long perSample = ActivationBytes(sampleShape.WithBatch(1), outputs);
        return (int)Math.Clamp(free / Math.Max(1, perSample), 0, int.MaxValue);
    }

    /// <summary>
    /// Runs inputs of <paramref name="inputShape"/> (N first) up to the requested values and returns each on the
    /// host, (N, per-sample elements), by the name it was asked with.
    /// </summary>
    /// <param name="staged">The same input already on the device (<see cref="StagedUploads"/>): used when the batch runs
    /// in one piece; a batch split into chunks uploads from <paramref name="input"/>.</param>
    public Dictionary<string, float[]> Forward(ReadOnlySpan<float> input, Shape inputShape, IReadOnlyCollection<string> outputs, DeviceTensor? staged = null)
    {
        if (outputs.Count == 0) throw new ArgumentException("no layer requested");
        if (input.Length != inputShape.Elements)
            throw new ArgumentException($"input: buffer has {input.Length} elements, expected {inputShape.Elements} for {inputShape}");
        foreach (var o in outputs) Graph.Resolve(o);
        int n = inputShape[0];
        int fits = MaxBatchThatFits(inputShape, outputs);
        if (fits < 1)
            throw new InsufficientMemoryException(
                $"{Device.Name}: one input of {inputShape.WithBatch(1)} needs {ActivationBytes(inputShape.WithBatch(1), outputs) >> 20} MiB of activations beside {ParameterBytes >> 20} MiB of parameters; the device has {Device.MemoryBytes >> 20} MiB");
        int chunk = n;
        if (fits < n)
        {
            chunk = fits;
            Log?.Invoke($"batch of {n} does not fit {Device.Name} ({Device.MemoryBytes >> 20} MiB): running it as chunks of {chunk}");
        }
        var results = new Dictionary<string, float[]>();
        long per = inputShape.PerSample;
        for (int start = 0; start < n; start += chunk)
        {
            int count = Math.Min(chunk, n - start);
            var plan = Plan(new PlanRequest(inputShape.WithBatch(count), outputs));
            if (start == 0)
                foreach (var (name, value) in plan.OutputValues)
                    results[name] = new float[n * plan.Shapes[value].PerSample];
            if (staged != null && count == n) Executor.Forward(plan, staged, results, start);
            else Executor.Forward(plan, input.Slice((int)(start * per), (int)(count * per)), results, start);
        }
        return results;
    }

    public void Dispose()
    {
        Executor.Dispose();
        Parameters.Dispose();
    }
}
