using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Graph.Ops;

/// <summary>y = max(x, 0). Backward reads y: the gradient passes where y &gt; 0.</summary>
public sealed class ReluOp : Op
{
    public override string Name => "Relu";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        return [inputs[0]];
    }

    public override OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs)
        => new(inputs[0].Elements, 8.0 * inputs[0].Elements);

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

/// <summary>Row-wise softmax over the last axis of a (N, classes) value.</summary>
public sealed class SoftmaxOp : Op
{
    public override string Name => "Softmax";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        Require(inputs[0].Rank == 2, node, () => $"needs (N, classes), got {inputs[0]}");
        return [inputs[0]];
    }

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var x = inputs[0].Shape;
        if (ctx.Device is HostDevice) Activations.SoftmaxHost(Host(outputs[0]), Host(inputs[0]), x[0], x[1]);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new ActivationsGpu(a)).Softmax(Gpu(outputs[0]), Gpu(inputs[0]), x[0], x[1]);
    }
}

/// <summary>Flatten (N, ...) to (N, rest): a view.</summary>
public sealed class FlattenOp : Op
{
    public override string Name => "Flatten";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        return [new Shape(inputs[0][0], (int)inputs[0].PerSample)];
    }

    public override bool IsView(Node node, bool training) => true;
    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs) { }
    public override bool HasBackward => true;
    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads) { }
}
