using Tp7.Engine.Devices;

namespace Tp7.Engine.Graph;

/// <summary>Work of one launch: FLOPs (a multiply-add counts 2) and bytes read and written, for GFLOP/s and GB/s.</summary>
public readonly record struct OpCost(double Flops, double Bytes)
{
    public static OpCost operator +(OpCost a, OpCost b) => new(a.Flops + b.Flops, a.Bytes + b.Bytes);
}

/// <summary>What an op's launch sees besides its tensors.</summary>
public sealed class OpContext(ComputeDevice device)
{
    public ComputeDevice Device { get; } = device;
    /// <summary>Train mode: dropout draws its mask (inference: identity).</summary>
    public bool Training { get; init; }
    /// <summary>Seed of this pass's random masks; each node mixes in its own index.</summary>
    public ulong Seed { get; init; }
    /// <summary>Index of the node being run (makes each dropout's mask its own).</summary>
    public int NodeIndex { get; set; }
    /// <summary>The network's parameters: what an op derives from them and keeps between passes is keyed on this
    /// store and valid while its <see cref="ParameterStore.Version"/> stays.</summary>
    public ParameterStore? Parameters { get; init; }
    /// <summary>What the forward matrix products compute in (the device's <see cref="ComputeDevice.Precision"/>):
    /// convolution, linear and matmul pick their tensor-core version of it on CUDA; fp32 everywhere else.</summary>
    public Tp7.Engine.Kernels.Precision Precision { get; init; }
}

/// <summary>
/// An op of the registry: validation and shape inference, cost, and its kernels per backend. One class per op;
/// the kernels themselves (host twins and ILGPU launchers) live in Engine.Kernels, one op family per file.
/// Backward convention for every op: <c>inputGrads[i]</c> is null when input i needs no gradient; parameter
/// gradients accumulate (+=) into their slice of the gradient block, activation gradients overwrite (=).
/// </summary>
public abstract class Op
{
    public abstract string Name { get; }

    /// <summary>Output shapes from input shapes; throws an error that names the node and the shapes.</summary>
    public abstract Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs);

    public virtual OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs)
        => new(0, 4.0 * (inputs.Sum(s => s.Elements) + outputs.Sum(s => s.Elements)));

    /// <summary>Work of the backward launches (data and weight gradients) for the same shapes.</summary>
    public virtual OpCost BackwardCost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs)
        => Cost(node, inputs, outputs);

    /// <summary>Whether this device can run the node (ggml's supports_op); the executor lists every refusal at once.</summary>
    public virtual bool Supports(ComputeDevice device, Node node) => device is HostDevice || device is IlgpuDevice;

    /// <summary>The output is a view of input 0 (flatten, reshape, identity; dropout when it is an identity): no launch,
    /// no memory. Input 0 may be a parameter: the output is then a view of the parameter block.</summary>
    public virtual bool IsView(Node node, bool training) => false;

    public abstract void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs);

    public virtual bool HasBackward => false;
    /// <summary>Why this node cannot be trained through although its op has a backward pass (an attribute the backward
    /// kernels do not handle), or null when it can; the planner refuses training with this reason.</summary>
    public virtual string? BackwardUnsupported(Node node) => null;
    /// <summary>Whether backward reads forward input <paramref name="index"/> (so training keeps it alive).</summary>
    public virtual bool BackwardReadsInput(Node node, int index, IReadOnlyList<bool> inputNeedsGrad) => false;
    /// <summary>Whether backward reads forward output <paramref name="index"/>.</summary>
    public virtual bool BackwardReadsOutput(Node node, int index) => false;

    /// <param name="outputGrads">d loss / d output; an op may overwrite these (they are dead after its backward).</param>
    public virtual void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads)
        => throw new NotSupportedException($"{node.Name}: op {Name} has no backward pass");

    protected static Span<float> Host(Tensor t) => HostDevice.Span(t.Data);
    protected static ILGPU.ArrayView<float> Gpu(Tensor t) => IlgpuDevice.View(t.Data);

    protected static void Require(bool condition, Node node, Func<string> message)
    {
        if (!condition) throw new ArgumentException($"{node.Name} ({node.Op}): {message()}");
    }

    /// <summary>A two-element attribute such as strides [sh, sw]; any other length is refused by name.</summary>
    protected static int[] Pair(Node node, string name, int[] fallback)
    {
        var v = node.Attributes.Ints(name, fallback);
        Require(v.Length == 2, node, () => $"attribute {name} must have 2 values (height, width), got [{string.Join(", ", v)}]");
        return v;
    }

    /// <summary>The pads attribute: [ph, pw] on both sides, or ONNX's [top, left, bottom, right] (begins, then ends).</summary>
    protected static (int Top, int Left, int Bottom, int Right) Pads(Node node)
    {
        var p = node.Attributes.Ints("pads", [0, 0]);
        Require(p.Length == 2 || p.Length == 4, node,
            () => $"attribute pads must be [ph, pw] or [top, left, bottom, right], got [{string.Join(", ", p)}]");
        return p.Length == 2 ? (p[0], p[1], p[0], p[1]) : (p[0], p[1], p[2], p[3]);
    }

    protected static void Arity(Node node, IReadOnlyList<Shape> inputs, int min, int max = -1)
    {
        if (max < 0) max = min;
        Require(inputs.Count >= min && inputs.Count <= max, node,
            () => $"takes {(min == max ? $"{min}" : $"{min} to {max}")} inputs, got {inputs.Count}");
    }
}

/// <summary>Every op by name. Adding an op is a new class in Engine/Graph/Ops and one entry here.</summary>
public static class OpRegistry
{
    static readonly Dictionary<string, Op> ops = new Op[]
    {
        new Ops.Conv2dOp(), new Ops.LinearOp(), new Ops.ReluOp(), new Ops.MaxPoolOp(), new Ops.AveragePoolOp(), new Ops.AdaptiveAvgPoolOp(),
        new Ops.GlobalAvgPoolOp(), new Ops.FlattenOp(), new Ops.DropoutOp(), new Ops.SoftmaxOp(), new Ops.AddOp(),
        new Ops.BatchNormOp(), new Ops.SubOp(), new Ops.MulOp(), new Ops.DivOp(), new Ops.ClipOp(), new Ops.LeakyReluOp(),
        new Ops.ConcatOp(), new Ops.SplitOp(), new Ops.TransposeOp(), new Ops.MatMulOp(), new Ops.ReshapeOp(), new Ops.IdentityOp(),
    }.ToDictionary(o => o.Name, StringComparer.Ordinal);

    public static Op Get(string name)
        => ops.TryGetValue(name, out var op) ? op : throw new ArgumentException($"unknown op '{name}'; known: {string.Join(", ", ops.Keys)}");

    public static IEnumerable<string> Names => ops.Keys;
}
