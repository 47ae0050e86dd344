using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Graph.Ops;

/// <summary>An op of one input whose output has its shape, element by element (Relu, Clip, LeakyRelu): reads and
/// writes each element once.</summary>
public abstract class ElementwiseUnaryOp : Op
{
    protected virtual double FlopsPerElement => 1;

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        return [inputs[0]];
    }

    public override OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs)
        => new(FlopsPerElement * inputs[0].Elements, 8.0 * inputs[0].Elements);
}

/// <summary>y = max(x, 0). Backward reads y: the gradient passes where y &gt; 0.</summary>
public sealed class ReluOp : ElementwiseUnaryOp
{
    public override string Name => "Relu";

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        if (ctx.Device is HostDevice) Activations.ReluHost(Host(outputs[0]), Host(inputs[0]));
        else ((IlgpuDevice)ctx.Device).Kernels(a => new ActivationsGpu(a)).Relu(Gpu(outputs[0]), Gpu(inputs[0]));
    }

    public override bool HasBackward => true;
    public override bool BackwardReadsOutput(Node node, int index) => true;

    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads)
    {
        if (inputGrads[0] is not { } dx) return;
        if (ctx.Device is HostDevice) Activations.ReluBackwardHost(Host(dx), Host(outputGrads[0]), Host(outputs[0]));
        else ((IlgpuDevice)ctx.Device).Kernels(a => new ActivationsGpu(a)).ReluBackward(Gpu(dx), Gpu(outputGrads[0]), Gpu(outputs[0]));
    }

    /// <summary>dy = y &gt; 0 ? dy : 0 in place: the backward of a ReLU fused into a conv or linear epilogue.</summary>
    public static void BackwardInPlace(OpContext ctx, Tensor dy, Tensor y)
    {
        if (ctx.Device is HostDevice) Activations.ReluBackwardHost(Host(dy), Host(dy), Host(y));
        else ((IlgpuDevice)ctx.Device).Kernels(a => new ActivationsGpu(a)).ReluBackward(Gpu(dy), Gpu(dy), Gpu(y));
    }
}

/// <summary>
/// Dropout with drop probability p (attribute "p"). At inference, and for p = 0, an identity (a view). In train mode
/// a seeded counter-based mask (<see cref="Kernels.Dropout.Keep"/>): the same seed gives the same mask on every
/// backend, and backward recomputes it instead of storing it.
/// </summary>
public sealed class DropoutOp : Op
{
    public override string Name => "Dropout";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        float p = node.Attributes.Float("p", 0.5f);
        Require(p >= 0 && p < 1, node, () => $"drop probability {p} is outside [0, 1)");
        return [inputs[0]];
    }

    public override bool IsView(Node node, bool training) => !training || node.Attributes.Float("p", 0.5f) == 0f;

    /// <summary>The mask seed of one node in one pass.</summary>
    public static ulong MaskSeed(OpContext ctx) => ctx.Seed * 0x9E3779B97F4A7C15UL + (ulong)ctx.NodeIndex + 1;

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        float p = node.Attributes.Float("p", 0.5f);
        if (ctx.Device is HostDevice) Kernels.Dropout.ForwardHost(Host(outputs[0]), Host(inputs[0]), p, MaskSeed(ctx));
        else ((IlgpuDevice)ctx.Device).Kernels(a => new DropoutGpu(a)).Forward(Gpu(outputs[0]), Gpu(inputs[0]), p, MaskSeed(ctx));
    }

    public override bool HasBackward => true;

    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads)
    {
        if (inputGrads[0] is not { } dx) return;
        float p = node.Attributes.Float("p", 0.5f);
        if (ctx.Device is HostDevice) Kernels.Dropout.BackwardHost(Host(dx), Host(outputGrads[0]), p, MaskSeed(ctx));
        else ((IlgpuDevice)ctx.Device).Kernels(a => new DropoutGpu(a)).Backward(Gpu(dx), Gpu(outputGrads[0]), p, MaskSeed(ctx));
    }
}

/// <summary>
/// Softmax along attribute <c>axis</c> (default -1, the last; negative counts from the end). With flag
/// <c>coerce2d</c> (ONNX opset &lt; 13) the value is seen as [prod(dims[:axis]), prod(dims[axis:])] and each row of
/// that is normalised. The batch axis 0 is refused: a sample's result would depend on the others in its chunk.
/// </summary>
public sealed class SoftmaxOp : Op
{
    public override string Name => "Softmax";

    /// <summary>The value as (outer, axis length, inner) for the kernels.</summary>
    static (int Outer, int Axis, int Inner) Split(Node node, Shape x)
    {
        int axis = node.Attributes.Int("axis", -1);
        if (axis < 0) axis += x.Rank;
        Require(axis >= 1 && axis < x.Rank, node, () => $"axis {node.Attributes.Int("axis", -1)} is not one of 1 .. {x.Rank - 1} of {x} (0 is the batch)");
        long outer = 1, len = 1, inner = 1;
        for (int d = 0; d < x.Rank; d++)
        {
            if (d < axis) outer *= x[d];
            else if (d == axis || node.Attributes.Flag("coerce2d")) len *= x[d];
            else inner *= x[d];
        }
        Require(outer * len * inner <= int.MaxValue, node, () => $"{x} is too large for the softmax kernels");
        return ((int)outer, (int)len, (int)inner);
    }

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        Require(inputs[0].Rank >= 2, node, () => $"needs (N, ...), got {inputs[0]}");
        Split(node, inputs[0]);
        return [inputs[0]];
    }

    public override OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs)
        => new(4.0 * inputs[0].Elements, 12.0 * inputs[0].Elements);

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var (outer, axis, inner) = Split(node, inputs[0].Shape);
        if (ctx.Device is HostDevice) Activations.SoftmaxAxisHost(Host(outputs[0]), Host(inputs[0]), outer, axis, inner);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new ActivationsGpu(a)).SoftmaxAxis(Gpu(outputs[0]), Gpu(inputs[0]), outer, axis, inner);
    }
}

/// <summary>
/// Flatten to [prod(dims[:axis]), prod(dims[axis:])], attribute <c>axis</c> (default 1, negative counts from the
/// end; 0 is refused, it would fold the batch away): a view.
/// </summary>
public sealed class FlattenOp : Op
{
    public override string Name => "Flatten";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        var x = inputs[0];
        int axis = node.Attributes.Int("axis", 1);
        if (axis < 0) axis += x.Rank;
        Require(x.Rank >= 1 && axis >= 1 && axis <= x.Rank, node, () => $"axis {node.Attributes.Int("axis", 1)} is not one of 1 .. {x.Rank} of {x} (0 would flatten the batch)");
        long outer = 1, inner = 1;
        for (int d = 0; d < x.Rank; d++)
            if (d < axis) outer *= x[d]; else inner *= x[d];
        Require(outer <= int.MaxValue && inner <= int.MaxValue, node, () => $"{x} flattened at axis {axis} has a dimension above 2^31");
        return [new Shape((int)outer, (int)inner)];
    }

    public override bool IsView(Node node, bool training) => true;
    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs) { }
    public override bool HasBackward => true;
    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads) { }
}

/// <summary>
/// y = min(max(x, min), max), attributes floats <c>min</c> and <c>max</c> (defaults -inf, +inf): ReLU6 and friends.
/// As ONNX defines, min &gt; max gives max everywhere.
/// </summary>
public sealed class ClipOp : ElementwiseUnaryOp
{
    public override string Name => "Clip";

    static (float Lo, float Hi) Bounds(Node node)
        => (node.Attributes.Float("min", float.NegativeInfinity), node.Attributes.Float("max", float.PositiveInfinity));

    protected override double FlopsPerElement => 2;

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var (lo, hi) = Bounds(node);
        if (ctx.Device is HostDevice) Activations.ClipHost(Host(outputs[0]), Host(inputs[0]), lo, hi);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new ActivationsGpu(a)).Clip(Gpu(outputs[0]), Gpu(inputs[0]), lo, hi);
    }
}

/// <summary>y = x &lt; 0 ? alpha·x : x, attribute float <c>alpha</c> (default 0.01, ONNX's).</summary>
public sealed class LeakyReluOp : ElementwiseUnaryOp
{
    public override string Name => "LeakyRelu";

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        float alpha = node.Attributes.Float("alpha", 0.01f);
        if (ctx.Device is HostDevice) Activations.LeakyReluHost(Host(outputs[0]), Host(inputs[0]), alpha);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new ActivationsGpu(a)).LeakyRelu(Gpu(outputs[0]), Gpu(inputs[0]), alpha);
    }
}
