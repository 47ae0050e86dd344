using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Graph.Ops;

/// <summary>
/// y = a ∘ b with numpy/ONNX multidirectional broadcasting (ranks aligned on the right; each pair of dims equal or
/// one of them 1): an activation and a parameter such as a [1, 3, H, W] mean image, a [C, 1, 1] scale or a scalar [].
/// Kernels: <see cref="Broadcast"/> and <see cref="BroadcastGpu"/>. One subclass per ONNX op.
/// </summary>
public abstract class BroadcastBinaryOp : Op
{
    protected abstract BinaryKind Kind { get; }

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 2);
        var y = StridedLayout.BroadcastDims(inputs[0].Dims, inputs[1].Dims);
        Require(y != null, node, () => $"shapes {inputs[0]} and {inputs[1]} do not broadcast");
        Require(y!.Length <= StridedLayout.MaxGpuRank, node, () => $"rank {y.Length} is above {StridedLayout.MaxGpuRank}: {inputs[0]} and {inputs[1]}");
        return [new Shape(y)];
    }

    public override OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs)
        => new(outputs[0].Elements, 4.0 * (inputs[0].Elements + inputs[1].Elements + outputs[0].Elements));

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var layout = StridedLayout.Binary(outputs[0].Shape.Dims, inputs[0].Shape.Dims, inputs[1].Shape.Dims);
        if (ctx.Device is HostDevice) Broadcast.BinaryHost(Kind, Host(outputs[0]), Host(inputs[0]), Host(inputs[1]), layout);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new BroadcastGpu(a)).Binary(Kind, Gpu(outputs[0]), Gpu(inputs[0]), Gpu(inputs[1]), layout);
    }
}

/// <summary>y = a + b (the residual connection of ResNets; input normalisation). Backward for equal shapes passes dy to both inputs.</summary>
public sealed class AddOp : BroadcastBinaryOp
{
    public override string Name => "Add";
    protected override BinaryKind Kind => BinaryKind.Add;

    public override bool HasBackward => true;

    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads)
    {
        // An input of the output's shape gets dy as it is; one that was broadcast would need dy summed over the
        // broadcast dimensions, which nothing trains through yet.
        foreach (var dx in inputGrads)
        {
            if (dx == null) continue;
            if (dx.Shape != outputs[0].Shape)
                throw new NotSupportedException($"{node.Name}: backward of a broadcasting Add ({inputs[0].Shape} + {inputs[1].Shape}) into the {dx.Shape} input is not supported");
            ctx.Device.Copy(dx.Data, outputGrads[0].Data);
        }
    }
}

/// <summary>y = a - b with broadcasting (mean subtraction).</summary>
public sealed class SubOp : BroadcastBinaryOp
{
    public override string Name => "Sub";
    protected override BinaryKind Kind => BinaryKind.Sub;
}

/// <summary>y = a · b with broadcasting (per-channel scales).</summary>
public sealed class MulOp : BroadcastBinaryOp
{
    public override string Name => "Mul";
    protected override BinaryKind Kind => BinaryKind.Mul;
}

/// <summary>y = a / b with broadcasting (division by a per-channel standard deviation).</summary>
public sealed class DivOp : BroadcastBinaryOp
{
    public override string Name => "Div";
    protected override BinaryKind Kind => BinaryKind.Div;
}

/// <summary>
/// Inference BatchNormalization over NCHW: inputs (x, scale, bias, mean, var), attribute eps. (The ONNX importer
/// folds it into a preceding convolution; this op is for the ones that follow something else.)
/// </summary>
public sealed class BatchNormOp : Op
{
    public override string Name => "BatchNormalization";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 5);
        Require(inputs[0].Rank >= 2, node, () => $"needs (N, C, ...), got {inputs[0]}");
        for (int i = 1; i < 5; i++)
        {
            int k = i;
            Require(inputs[k].Rank == 1 && inputs[k][0] == inputs[0][1], node, () => $"input {k} has shape {inputs[k]}, expected [{inputs[0][1]}]");
        }
        return [inputs[0]];
    }

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var x = inputs[0].Shape;
        int n = x[0], c = x[1];
        long plane = x.Elements / Math.Max(1L, (long)n * c);
        float eps = node.Attributes.Float("eps", 1e-5f);
        if (ctx.Device is HostDevice)
            Elementwise.BatchNormHost(Host(outputs[0]), Host(inputs[0]), Host(inputs[1]), Host(inputs[2]), Host(inputs[3]), Host(inputs[4]), n, c, plane, eps);
        else
            ((IlgpuDevice)ctx.Device).Kernels(a => new ElementwiseGpu(a))
                .BatchNorm(Gpu(outputs[0]), Gpu(inputs[0]), Gpu(inputs[1]), Gpu(inputs[2]), Gpu(inputs[3]), Gpu(inputs[4]), n, c, plane, eps);
    }
}
