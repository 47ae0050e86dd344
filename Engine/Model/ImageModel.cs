using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using Tp7.Engine.Imaging;
using Tp7.Engine.Onnx;

namespace Tp7.Engine.Model;

/// <summary>One node of a model's table (`tp7 info`): name, tap, op, output value and shape at batch 1, parameters, FLOPs.</summary>
public sealed record LayerRow(string Node, string Tap, string Op, string Value, Shape Output, long Parameters, double Flops);

/// <summary>
/// An image network on a <see cref="ComputeDevice"/>: a graph on the executor with its parameters in one block, and
/// what a user needs besides: the preprocessing its inputs expect, the layer whose values are its features, the
/// names of its classes when it ends in logits. Built from VGG16 weights (torchvision's layout) or from an ONNX
/// import. A forward pass stops at the last requested layer and returns every requested layer on the host.
/// </summary>
public sealed class ImageModel : IDisposable
{
    public Network Network { get; }
    public ComputeDevice Device => Network.Device;
    public Graph.Graph Graph => Network.Graph;
    /// <summary>vgg16, resnet18, or the ONNX file's name.</summary>
    public string Name { get; }
    public string WeightsSource { get; }
    public long WeightBytes => Network.ParameterBytes;
    public long ParameterCount => Network.Parameters.Count;
    /// <summary>Columns of the output when it is (N, classes) logits, else 0.</summary>
    public int NumClasses { get; }
    public IReadOnlyList<string>? ClassNames { get; }
    public Preprocessing Preprocessing { get; }
    /// <summary>The layer features come from by default (VGG16: relu7; ONNX: the input of the last Gemm/MatMul, else the output).</summary>
    public string DefaultLayer { get; }
    /// <summary>When set, each launch is synchronised and timed into this profiler.</summary>
    public LayerProfiler? Profiler { get => Network.Profiler; set => Network.Profiler = value; }
    /// <summary>Receives one-line notes (e.g. a batch split to fit memory).</summary>
    public Action<string>? Log { get => Network.Log; set => Network.Log = value; }
    readonly bool isVgg16;

    /// <summary>torchvision's VGG16 with these weights.</summary>
    public ImageModel(ComputeDevice device, Vgg16Weights weights, Preprocessing? preprocessing = null)
        : this(device, Vgg16Graph.Build(weights.NumClasses), name => weights[name], "vgg16", weights.Source, preprocessing ?? Preprocessing.ImageNet, "relu7",
            weights.ClassNames ?? (weights.NumClasses == Vgg16Architecture.NumClasses ? ImageNetClasses.Names : null))
    {
        isVgg16 = true;
    }

    /// <summary>An imported network; <paramref name="preprocessing"/> is what its inputs expect.</summary>
    public ImageModel(ComputeDevice device, ImportedModel model, string name, Preprocessing preprocessing, IReadOnlyList<string>? classNames = null)
        : this(device, model.Graph, key => model.Weights[key], name, model.Source, preprocessing, DefaultFeatureLayer(model.Graph), classNames)
    {
    }

    ImageModel(ComputeDevice device, Graph.Graph graph, Func<string, float[]> weightOf, string name, string source, Preprocessing preprocessing,
        string defaultLayer, IReadOnlyList<string>? classNames)
    {
        Name = name;
        WeightsSource = source;
        Preprocessing = preprocessing;
        DefaultLayer = TapName(graph, defaultLayer);
        var input = graph.Inputs.Values.Single();
        if (input.Rank != 4 || input[1] != 3)
            throw new ArgumentException($"{source}: input {graph.Inputs.Keys.Single()} has shape {input}; an image model takes (N, 3, H, W)");
        var outShape = new ExecutionPlan(graph, new PlanRequest(input, [graph.Output])).Shapes[graph.Output];
        NumClasses = outShape.Rank == 2 ? outShape[1] : 0;
        ClassNames = classNames != null && classNames.Count == NumClasses ? classNames
            : NumClasses == Vgg16Architecture.NumClasses ? ImageNetClasses.Names : null;
        Network = new Network(device, graph);
        try
        {
            foreach (var e in Network.Parameters.Entries) Network.Parameters.Write(e.Name, weightOf(e.Name));
        }
        catch
        {
            Network.Dispose();
            throw;
        }
    }

    /// <summary>The input of the last Gemm/MatMul (imported as Linear or MatMul), else the output.</summary>
    public static string DefaultFeatureLayer(Graph.Graph g)
        => g.Nodes.LastOrDefault(n => n.Op is "Linear" or "MatMul")?.Inputs[0] ?? g.Output;

    /// <summary>A value by its tap's name where it has one: a tap's name reads better than a value's (ResNet18: pool5
    /// rather than Pooling395_Output_0).</summary>
    public static string TapName(Graph.Graph g, string value)
        => g.Aliases.FirstOrDefault(a => a.Value == value && a.Alias != value).Alias ?? value;

    /// <summary>The graph value a layer name stands for: a tap alias (conv1_1 … fc8) or any value name of the graph.</summary>
    public string Resolve(string layer) => Resolve(Graph, layer);

    /// <param name="option">The option the name came from, for the error message.</param>
    public static string Resolve(Graph.Graph graph, string layer, string option = "--layer")
    {
        try { return graph.Resolve(layer); }
        catch (ArgumentException)
        {
            var aliases = graph.Aliases.Select(a => a.Alias).ToList();
            var values = graph.Nodes.SelectMany(n => n.Outputs).ToList();
            throw new ArgumentException($"{option}: '{layer}' is not a layer of the model; " +
                (aliases.Count > 0 ? $"taps: {string.Join(", ", aliases)}; " : "") +
                $"or any of its {values.Count} values (`tp7 info` lists them), e.g. {string.Join(", ", values.TakeLast(3))}");
        }
    }

    /// <summary>A layer name as features and caches record it: the tap's own spelling, else the value name (checked).</summary>
    public string CanonicalLayer(string layer) => CanonicalLayer(Graph, layer);

    public static string CanonicalLayer(Graph.Graph graph, string layer, string option = "--layer")
    {
        Resolve(graph, layer, option);
        foreach (var (a, _) in graph.Aliases)
            if (string.Equals(a, layer, StringComparison.OrdinalIgnoreCase)) return a;
        return layer;
    }

    /// <summary>Shape of a layer's value for <paramref name="n"/> images of the model's input size.</summary>
    public Shape LayerShape(string layer, int n = 1, int? size = null) => LayerShape(Graph, layer, n, size ?? Preprocessing.Size);

    /// <summary>Shape of a layer's value for <paramref name="n"/> square images of side <paramref name="size"/>, from the graph alone.</summary>
    public static Shape LayerShape(Graph.Graph graph, string layer, int n, int size)
    {
        var v = Resolve(graph, layer);
        return new ExecutionPlan(graph, new PlanRequest(new Shape(n, 3, size, size), [layer])).Shapes[v];
    }

    public Shape InputShape(int n, int size) => new(n, 3, size, size);

    /// <summary>
    /// The graph's nodes at batch 1 for a square input of <paramref name="size"/> (unfused, so every ReLU has its row),
    /// each with its input and output shapes, parameters and forward FLOPs from the op's own cost.
    /// </summary>
    public static IReadOnlyList<LayerRow> Layers(Graph.Graph graph, int size)
    {
        var input = graph.Inputs.Values.Single();
        var plan = new ExecutionPlan(graph, new PlanRequest(new Shape(1, input[1], size, size), [graph.Output], NoFusion: true));
        return plan.Graph.Nodes.Select(n =>
        {
            var ins = n.Inputs.Select(v => plan.Shapes[v]).ToList();
            var outs = n.Outputs.Select(v => plan.Shapes[v]).ToList();
            long parameters = n.Inputs.Where(graph.IsParameter).Distinct().Sum(v => plan.Shapes[v].Elements);
            string tap = graph.Aliases.FirstOrDefault(a => n.Outputs.Contains(a.Value)).Alias ?? n.Outputs[0];
            return new LayerRow(n.Name, tap, n.Op, n.Outputs[0], outs[0], parameters, OpRegistry.Get(n.Op).Cost(n, ins, outs).Flops);
        }).ToList();
    }

    /// <summary>FLOPs of one image's forward pass to the output (a multiply-add counts 2).</summary>
    public double ForwardFlops(int size) => Layers(Graph, size).Sum(l => l.Flops);

    /// <summary>The largest batch whose activations fit beside the weights (keeping 10 % of memory spare).</summary>
    public int MaxBatchThatFits(int height, int width, string lastTap)
        => Network.MaxBatchThatFits(new Shape(1, 3, height, width), [lastTap]);

    /// <summary>
    /// Runs images (N, 3, H, W) through the network up to the last of <paramref name="taps"/> and returns each tap
    /// as a host array (N, per-sample elements) in NCHW order, keyed by the name it was asked with.
    /// </summary>
    /// <param name="staged">The same input already uploaded (<see cref="StagedUploads"/>), or null.</param>
    public Dictionary<string, float[]> Forward(ReadOnlySpan<float> input, int n, int height, int width, IReadOnlyCollection<string> taps,
        DeviceTensor? staged = null)
    {
        if (isVgg16) Vgg16Architecture.OutputShapes(height, width); // a clear error for inputs below 32x32
        foreach (var t in taps) Resolve(t);
        return Network.Forward(input, new Shape(n, 3, height, width), taps, staged);
    }

    /// <summary>Softmax probabilities (N, classes) of logits (N, classes), computed on the device.</summary>
    public float[] Softmax(float[] logits, int n)
    {
        int cols = logits.Length / n;
        if (softmax == null)
        {
            // A one-node network, made once: its plans and arena are reused by every later call.
            var g = new Graph.Graph();
            g.Inputs["logits"] = new Shape(1, cols);
            g.Nodes.Add(new Node("softmax", "Softmax", ["logits"], ["probabilities"], new Attributes()));
            g.Output = "probabilities";
            softmax = new Network(Device, g);
        }
        return softmax.Forward(logits, new Shape(n, cols), ["probabilities"])["probabilities"];
    }

    Network? softmax;

    public void Dispose()
    {
        softmax?.Dispose();
        Network.Dispose();
    }
}
