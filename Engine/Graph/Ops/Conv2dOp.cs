using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Graph.Ops;

/// <summary>
/// 2-D convolution, NCHW input, OIHW weights, bias: inputs (x, w (K, C/group, R, S), b (K)), attributes strides
/// [sh, sw], pads [ph, pw] or ONNX's [top, left, bottom, right], dilations [dh, dw] (default [1, 1]), group (default 1)
/// and the fused epilogue flag relu (set by <see cref="Fusion"/>). Kernels: <see cref="Conv2d"/> (host) and
/// <see cref="Conv2dGpu"/>. Backward: dense convolutions only (group 1, dilations [1, 1]), asymmetric pads included.
/// </summary>
public sealed class Conv2dOp : Op
{
    public override string Name => "Conv";

    public static ConvShape ShapeOf(Node node, Shape x, Shape w)
    {
        var st = Pair(node, "strides", [1, 1]);
        var (top, left, bottom, right) = Pads(node);
        var d = Pair(node, "dilations", [1, 1]);
        int group = node.Attributes.Int("group", 1);
        return new ConvShape(x[0], x[1], x[2], x[3], w[0], w[2], w[3], st[0], st[1], top, left, bottom, right, d[0], d[1], group);
    }

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 3);
        Shape x = inputs[0], w = inputs[1], b = inputs[2];
        Require(x.Rank == 4 && w.Rank == 4, node, () => $"needs a 4-D input and 4-D weights, got {x} and {w}");
        int group = node.Attributes.Int("group", 1);
        Require(group > 0 && x[1] % group == 0 && w[0] % group == 0, node,
            () => $"group {group} must divide the input's {x[1]} channels and the weights' {w[0]} output channels");
        Require((long)w[1] * group == x[1], node, () => group == 1
            ? $"weights {w} expect {w[1]} input channels, the input {x} has {x[1]}"
            : $"weights {w} expect {w[1]} input channels per group x group {group} = {(long)w[1] * group}, the input {x} has {x[1]}");
        Require(b.Rank == 1 && b[0] == w[0], node, () => $"bias {b} does not match {w[0]} output channels");
        var s = ShapeOf(node, x, w);
        try { s.Validate(); }
        catch (ArgumentException e) { throw new ArgumentException($"{node.Name} ({Name}): {e.Message}", e); }
        return [new Shape(s.N, s.K, s.OutH, s.OutW)];
    }

    public override OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs)
    {
        var s = ShapeOf(node, inputs[0], inputs[1]);
        return new(s.ForwardFlops, s.ForwardBytes);
    }

    public override OpCost BackwardCost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs)
    {
        var s = ShapeOf(node, inputs[0], inputs[1]);
        return new(s.BackwardDataFlops + s.BackwardWeightFlops, s.BackwardDataBytes + s.BackwardWeightBytes);
    }

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var s = ShapeOf(node, inputs[0].Shape, inputs[1].Shape);
        bool relu = node.Attributes.Flag("relu");
        if (ctx.Device is HostDevice)
            Conv2d.ForwardHost(Host(outputs[0]), Host(inputs[0]), Host(inputs[1]), Host(inputs[2]), s, relu, Filters(ctx, node));
        else
        {
            var k = ((IlgpuDevice)ctx.Device).Kernels(a => new Conv2dGpu(a));
            // Grouped and dilated shapes have no tensor-core version: they stay in fp32.
            var version = !s.IsDense ? Conv2dVersion.V3GroupedDirect : ctx.Precision.MmaConvVersion() ?? k.DefaultVersion;
            k.Forward(version, Gpu(outputs[0]), Gpu(inputs[0]), Gpu(inputs[1]), Gpu(inputs[2]), s, relu);
        }
    }

    // Inference keeps each layer's Winograd filters per network while its parameters do not change; training
    // (weights move every step) transforms them on every call.
    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<ParameterStore, Dictionary<string, Conv2d.WinogradFilters>> filters = new();

    static Conv2d.WinogradFilters? Filters(OpContext ctx, Node node)
    {
        if (ctx.Training || ctx.Parameters is not { } store || !store.Contains(node.Inputs[1])) return null;
        var perNode = filters.GetOrCreateValue(store);
        Conv2d.WinogradFilters f;
        lock (perNode)
            if (!perNode.TryGetValue(node.Inputs[1], out f!)) perNode[node.Inputs[1]] = f = new Conv2d.WinogradFilters(); // by weight: names are unique in a store
        f.Version = store.Version;
        return f;
    }

    public override bool HasBackward => true;
    public override string? BackwardUnsupported(Node node)
    {
        int group = node.Attributes.Int("group", 1);
        var d = node.Attributes.Ints("dilations", [1, 1]);
        return group == 1 && d.All(v => v == 1) ? null
            : $"op Conv has a backward pass for dense convolutions only, not group {group} dilations [{string.Join(", ", d)}]";
    }
    // dW needs x; a fused ReLU needs its output to know where the gradient passes.
    public override bool BackwardReadsInput(Node node, int index, IReadOnlyList<bool> inputNeedsGrad)
        => index == 0 && inputNeedsGrad[1];
    public override bool BackwardReadsOutput(Node node, int index) => node.Attributes.Flag("relu");

    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads)
    {
        if (BackwardUnsupported(node) is { } why) throw new NotSupportedException($"{node.Name}: {why}");
        var s = ShapeOf(node, inputs[0].Shape, inputs[1].Shape);
        var dy = outputGrads[0];
        if (node.Attributes.Flag("relu")) ReluOp.BackwardInPlace(ctx, dy, outputs[0]);
        if (ctx.Device is HostDevice)
        {
            if (inputGrads[1] is { } dw)
                Conv2d.BackwardWeightHost(Host(dw), inputGrads[2] is { } db ? Host(db) : [], Host(dy), Host(inputs[0]), s);
            if (inputGrads[0] is { } dx)
                Conv2d.BackwardDataHost(Host(dx), Host(dy), Host(inputs[1]), s);
        }
        else
        {
            var k = ((IlgpuDevice)ctx.Device).Kernels(a => new Conv2dGpu(a));
            if (inputGrads[1] is { } dw)
            {
                var db = inputGrads[2];
                k.BackwardWeight(Gpu(dw), db != null ? Gpu(db) : Gpu(dw).SubView(0, 1), Gpu(dy), Gpu(inputs[0]), s, hasBias: db != null);
            }
            if (inputGrads[0] is { } dx)
                k.BackwardData(Gpu(dx), Gpu(dy), Gpu(inputs[1]), s);
        }
    }
}
