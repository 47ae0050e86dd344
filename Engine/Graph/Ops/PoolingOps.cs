using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Graph.Ops;

/// <summary>
/// Max pooling: attributes kernel [kh, kw], strides (default: the kernel), pads [ph, pw] or [top, left, bottom, right],
/// dilations [dh, dw] and flag ceil_mode; padding is -inf. Backward re-derives each window's argmax from x.
/// </summary>
public sealed class MaxPoolOp : Op
{
    public override string Name => "MaxPool";

    public static PoolShape ShapeOf(Node node, Shape x)
    {
        var k = Pair(node, "kernel", [2, 2]);
        var st = Pair(node, "strides", k);
        var (top, left, bottom, right) = Pads(node);
        var d = Pair(node, "dilations", [1, 1]);
        return new PoolShape(x[0], x[1], x[2], x[3], k[0], k[1], st[0], st[1], top, left, bottom, right, d[0], d[1],
            node.Attributes.Flag("ceil_mode"));
    }

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs) => WindowOutput(this, node, inputs, ShapeOf);

    public override OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs) => WindowCost(ShapeOf(node, inputs[0]));

    /// <summary>A pooling window's output (N, C, OH, OW) for a 4-D input, checked by <see cref="PoolShape.Validate"/>.</summary>
    internal static Shape[] WindowOutput(Op op, Node node, IReadOnlyList<Shape> inputs, Func<Node, Shape, PoolShape> shapeOf)
    {
        Arity(node, inputs, 1);
        Require(inputs[0].Rank == 4, node, () => $"needs NCHW, got {inputs[0]}");
        var s = shapeOf(node, inputs[0]);
        try { s.Validate(); }
        catch (ArgumentException e) { throw new ArgumentException($"{node.Name} ({op.Name}): {e.Message} does not fit input {inputs[0]}", e); }
        return [new Shape(s.N, s.C, s.OutH, s.OutW)];
    }

    internal static OpCost WindowCost(PoolShape s) => new(s.Flops, s.Bytes);

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var s = ShapeOf(node, inputs[0].Shape);
        if (ctx.Device is HostDevice) Pooling.MaxForwardHost(Host(outputs[0]), Host(inputs[0]), s);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new PoolingGpu(a)).MaxForward(Gpu(outputs[0]), Gpu(inputs[0]), s);
    }

    public override bool HasBackward => true;
    public override bool BackwardReadsInput(Node node, int index, IReadOnlyList<bool> inputNeedsGrad) => inputNeedsGrad[0];

    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads)
    {
        if (inputGrads[0] is not { } dx) return;
        var s = ShapeOf(node, inputs[0].Shape);
        if (ctx.Device is HostDevice) Pooling.MaxBackwardHost(Host(dx), Host(outputGrads[0]), Host(inputs[0]), s);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new PoolingGpu(a)).MaxBackward(Gpu(dx), Gpu(outputGrads[0]), Gpu(inputs[0]), s);
    }
}

/// <summary>
/// ONNX AveragePool: attributes kernel [kh, kw], strides (default: the kernel), pads [ph, pw] or [top, left, bottom,
/// right], flags ceil_mode and count_include_pad (divide by the window's area inside the padded input instead of
/// its in-bounds elements; see <see cref="Pooling.AvgForwardHost"/>). No dilations. Forward only.
/// </summary>
public sealed class AveragePoolOp : Op
{
    public override string Name => "AveragePool";

    public static PoolShape ShapeOf(Node node, Shape x)
    {
        var k = Pair(node, "kernel", [2, 2]);
        var st = Pair(node, "strides", k);
        var (top, left, bottom, right) = Pads(node);
        return new PoolShape(x[0], x[1], x[2], x[3], k[0], k[1], st[0], st[1], top, left, bottom, right,
            CeilMode: node.Attributes.Flag("ceil_mode"));
    }

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        var d = node.Attributes.Ints("dilations", [1, 1]);
        Require(d.All(v => v == 1), node, () => $"dilations [{string.Join(", ", d)}] are not supported, only [1, 1]");
        return MaxPoolOp.WindowOutput(this, node, inputs, ShapeOf);
    }

    public override OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs) => MaxPoolOp.WindowCost(ShapeOf(node, inputs[0]));

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var s = ShapeOf(node, inputs[0].Shape);
        bool includePad = node.Attributes.Flag("count_include_pad");
        if (ctx.Device is HostDevice) Pooling.AvgForwardHost(Host(outputs[0]), Host(inputs[0]), s, includePad);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new PoolingGpu(a)).AvgForward(Gpu(outputs[0]), Gpu(inputs[0]), s, includePad);
    }
}

/// <summary>torchvision's AdaptiveAvgPool2d to attribute output [oh, ow]; a view when the input already has that size.</summary>
public sealed class AdaptiveAvgPoolOp : Op
{
    public override string Name => "AdaptiveAvgPool";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        Require(inputs[0].Rank == 4, node, () => $"needs NCHW, got {inputs[0]}");
        var o = node.Attributes.Ints("output", [1, 1]);
        Require(o[0] > 0 && o[1] > 0, node, () => $"output size {o[0]}x{o[1]} must be positive");
        return [new Shape(inputs[0][0], inputs[0][1], o[0], o[1])];
    }

    public override bool IsView(Node node, bool training) => false;

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        Shape x = inputs[0].Shape, y = outputs[0].Shape;
        if (x == y) { ctx.Device.Copy(outputs[0].Data, inputs[0].Data); return; }
        if (ctx.Device is HostDevice) Pooling.AdaptiveAvgForwardHost(Host(outputs[0]), Host(inputs[0]), x[0], x[1], x[2], x[3], y[2], y[3]);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new PoolingGpu(a)).AdaptiveAvgForward(Gpu(outputs[0]), Gpu(inputs[0]), x[0], x[1], x[2], x[3], y[2], y[3]);
    }

    public override bool HasBackward => true;

    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads)
    {
        if (inputGrads[0] is not { } dx) return;
        Shape x = inputs[0].Shape, y = outputs[0].Shape;
        if (x == y) { ctx.Device.Copy(dx.Data, outputGrads[0].Data); return; }
        if (ctx.Device is HostDevice) Pooling.AdaptiveAvgBackwardHost(Host(dx), Host(outputGrads[0]), x[0], x[1], x[2], x[3], y[2], y[3]);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new PoolingGpu(a)).AdaptiveAvgBackward(Gpu(dx), Gpu(outputGrads[0]), x[0], x[1], x[2], x[3], y[2], y[3]);
    }
}

/// <summary>Global average pooling (ONNX GlobalAveragePool): (N, C, H, W) to (N, C, 1, 1); the adaptive pool's kernels.</summary>
public sealed class GlobalAvgPoolOp : Op
{
    public override string Name => "GlobalAveragePool";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        Require(inputs[0].Rank == 4, node, () => $"needs NCHW, got {inputs[0]}");
        return [new Shape(inputs[0][0], inputs[0][1], 1, 1)];
    }

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        Shape x = inputs[0].Shape;
        if (ctx.Device is HostDevice) Pooling.AdaptiveAvgForwardHost(Host(outputs[0]), Host(inputs[0]), x[0], x[1], x[2], x[3], 1, 1);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new PoolingGpu(a)).AdaptiveAvgForward(Gpu(outputs[0]), Gpu(inputs[0]), x[0], x[1], x[2], x[3], 1, 1);
    }

    public override bool HasBackward => true;

    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads)
    {
        if (inputGrads[0] is not { } dx) return;
        Shape x = inputs[0].Shape;
        if (ctx.Device is HostDevice) Pooling.AdaptiveAvgBackwardHost(Host(dx), Host(outputGrads[0]), x[0], x[1], x[2], x[3], 1, 1);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new PoolingGpu(a)).AdaptiveAvgBackward(Gpu(dx), Gpu(outputGrads[0]), x[0], x[1], x[2], x[3], 1, 1);
    }
}
