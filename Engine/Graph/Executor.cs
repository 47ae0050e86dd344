using System.Diagnostics;
using Tp7.Engine.Devices;
using Tp7.Engine.Model;

namespace Tp7.Engine.Graph;

/// <summary>
/// Runs any plan of one network on its device: one arena for the activations (grown when a plan needs more), the
/// parameters from a <see cref="ParameterStore"/>. Forward values the caller asked for are copied to the host as
/// soon as they are written, so they need not stay alive; gradients likewise as soon as they are complete.
/// </summary>
public sealed class Executor(ParameterStore parameters) : IDisposable
{
    DeviceTensor? arena;

    public ComputeDevice Device => parameters.Device;
    public ParameterStore Parameters => parameters;
    /// <summary>When set, every launch and copy is timed into it (see <see cref="LayerProfiler"/>), labelled with its alias (tap) name.</summary>
    public LayerProfiler? Profiler { get; set; }
    /// <summary>Bytes held by the arena now.</summary>
    public long ArenaBytes => 4 * (arena?.Length ?? 0);

    Tensor Value(ExecutionPlan plan, string v)
    {
        if (plan.Graph.IsParameter(v)) return parameters[v];
        var shape = plan.Shapes[v];
        if (plan.ParameterViewOf(v) is { } p) return parameters[p].Reshape(shape);
        return new Tensor(arena!.Slice(plan.OffsetOf(v), shape.Elements), shape);
    }

    Tensor? Grad(ExecutionPlan plan, string v)
    {
        if (!plan.NeedsGrad(v)) return null;
        if (plan.Graph.IsParameter(v)) return parameters.Grad(v);
        var shape = plan.Shapes[v];
        return new Tensor(arena!.Slice(plan.GradOffsetOf(v), shape.Elements), shape);
    }

    void EnsureArena(long elements)
    {
        if (arena != null && arena.Length >= elements) return;
        arena?.Dispose();
        arena = null;
        arena = Device.Allocate(Math.Max(1, elements));
    }

    /// <summary>Frees the arena (the next run allocates what its plan needs).</summary>
    public void ReleaseArena()
    {
        arena?.Dispose();
        arena = null;
    }

    /// <summary>
    /// The forward pass: uploads <paramref name="input"/>, runs the plan's forward nodes and copies each requested
    /// output into <paramref name="results"/> (per name, at <paramref name="sampleOffset"/> samples in).
    /// </summary>
    public void Forward(ExecutionPlan plan, ReadOnlySpan<float> input, IDictionary<string, float[]> results, int sampleOffset = 0, ulong seed = 0)
        => Forward(plan, input, null, results, sampleOffset, seed);

    /// <summary>
    /// The forward pass from an input already on the device (a staged upload, see <see cref="StagedUploads"/>): it is
    /// copied into the plan's input slot on the compute stream, so the caller may refill its buffer once this returns.
    /// </summary>
    public void Forward(ExecutionPlan plan, DeviceTensor staged, IDictionary<string, float[]> results, int sampleOffset = 0, ulong seed = 0)
        => Forward(plan, default, staged, results, sampleOffset, seed);

    void Forward(ExecutionPlan plan, ReadOnlySpan<float> input, DeviceTensor? staged, IDictionary<string, float[]> results, int sampleOffset, ulong seed)
    {
        EnsureArena(plan.ArenaElements);
        var x = Value(plan, plan.InputName);
        long given = staged?.Length ?? input.Length;
        Check(given == x.Elements, $"input has {given} values, the plan takes {x.Shape}");
        var copy = Profiler?.Begin(Device) ?? default;
        if (staged != null) Device.Copy(x.Data, staged);
        else Device.Upload(x.Data, input);
        Profiler?.EndCopy(copy, Device, staged != null ? "input (staged, device copy)" : "upload", 4.0 * given);
        var ctx = new OpContext(Device) { Training = plan.Training, Seed = seed, Parameters = parameters, Precision = Device.Precision };
        var wanted = plan.OutputValues.GroupBy(kv => kv.Value).ToDictionary(g => g.Key, g => g.Select(kv => kv.Key).ToArray());
        Collect(plan, plan.InputName, wanted, results, sampleOffset, grad: false);
        foreach (var i in plan.ForwardNodes)
        {
            var node = plan.Graph.Nodes[i];
            var op = OpRegistry.Get(node.Op);
            if (!plan.IsView(i))
            {
                var ins = node.Inputs.Select(v => Value(plan, v)).ToArray();
                var outs = node.Outputs.Select(v => Value(plan, v)).ToArray();
                ctx.NodeIndex = i;
                Launch(plan, node, ins, outs, () => op.Forward(ctx, node, ins, outs), op.Cost, "");
            }
            foreach (var v in node.Outputs) Collect(plan, v, wanted, results, sampleOffset, grad: false);
        }
    }

    /// <summary>
    /// Backward from the gradient of the plan's output (already written by the loss into <see cref="OutputGradient"/>)
    /// down to the trainable parameters: their gradients accumulate into the parameter store's block; requested
    /// activation gradients are copied into <paramref name="gradients"/>.
    /// </summary>
    public void Backward(ExecutionPlan plan, IDictionary<string, float[]>? gradients = null, ulong seed = 0)
    {
        Check(plan.Training, "backward needs a training plan");
        var ctx = new OpContext(Device) { Training = true, Seed = seed };
        var wanted = plan.GradientValues.GroupBy(kv => kv.Value).ToDictionary(g => g.Key, g => g.Select(kv => kv.Key).ToArray());
        if (gradients != null) Collect(plan, plan.Graph.Output, wanted, gradients, 0, grad: true);
        foreach (var i in plan.BackwardNodes)
        {
            var node = plan.Graph.Nodes[i];
            var op = OpRegistry.Get(node.Op);
            if (!plan.IsView(i))
            {
                var ins = node.Inputs.Select(v => Value(plan, v)).ToArray();
                var outs = node.Outputs.Select(v => Value(plan, v)).ToArray();
                var dOuts = node.Outputs.Select(v => Grad(plan, v)!).ToArray();
                var dIns = node.Inputs.Select(v => Grad(plan, v)).ToArray();
                ctx.NodeIndex = i;
                Launch(plan, node, ins, outs, () => op.Backward(ctx, node, ins, outs, dOuts, dIns), op.BackwardCost, " backward");
            }
            if (gradients != null)
                foreach (var v in node.Inputs.Where(v => !plan.Graph.IsParameter(v))) Collect(plan, v, wanted, gradients, 0, grad: true);
        }
    }

    /// <summary>Runs one launch; with a profiler, records its time (device events or a stopwatch) and cost under the node's tap name.</summary>
    void Launch(ExecutionPlan plan, Node node, Tensor[] ins, Tensor[] outs, Action run,
        Func<Node, IReadOnlyList<Shape>, IReadOnlyList<Shape>, OpCost> cost, string suffix)
    {
        var mark = Profiler?.Begin(Device) ?? default;
        run();
        if (Profiler == null) return;
        var c = cost(node, ins.Select(t => t.Shape).ToList(), outs.Select(t => t.Shape).ToList());
        Profiler.End(mark, Device, Label(plan, node), OpLabel(node) + suffix, outs[0].Shape.ToString(), c);
    }

    /// <summary>The plan's output value (logits) and the buffer its gradient goes to, for the loss.</summary>
    public (Tensor Output, Tensor Gradient) OutputAndGradient(ExecutionPlan plan)
        => (Value(plan, plan.Graph.Output), Grad(plan, plan.Graph.Output)!);

    void Collect(ExecutionPlan plan, string v, Dictionary<string, string[]> wanted, IDictionary<string, float[]> results, int sampleOffset, bool grad)
    {
        if (!wanted.TryGetValue(v, out var names)) return;
        var t = grad ? Grad(plan, v)! : Value(plan, v);
        foreach (var name in names)
        {
            if (!results.TryGetValue(name, out var dst)) results[name] = dst = new float[t.Elements];
            var copy = Profiler?.Begin(Device) ?? default;
            Device.Download(t.Data, dst.AsSpan((int)(sampleOffset * t.Shape.PerSample), (int)t.Elements));
            Profiler?.EndCopy(copy, Device, "download", 4.0 * t.Elements);
        }
    }

    static string Label(ExecutionPlan plan, Node node)
    {
        foreach (var (alias, value) in plan.Graph.Aliases)
            if (value == node.Name) return alias;
        foreach (var (alias, value) in plan.Graph.Aliases)
            if (node.Outputs.Contains(value)) return alias;
        return node.Name;
    }

    static string OpLabel(Node node) => node.Op.ToLowerInvariant() + (node.Attributes.Flag("relu") ? "+relu" : "");

    static void Check(bool ok, string message)
    {
        if (!ok) throw new ArgumentException(message);
    }

    public void Dispose() => ReleaseArena();
}
