using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Graph.Ops;

/// <summary>y = a + b for equal shapes: the residual connection of ResNets. Backward passes dy to both inputs.</summary>
public sealed class AddOp : Op
{
    public override string Name => "Add";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 2);
        Require(inputs[0] == inputs[1], node, () => $"adds equal shapes only, got {inputs[0]} and {inputs[1]}");
        return [inputs[0]];
    }

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        if (ctx.Device is HostDevice) Elementwise.AddHost(Host(outputs[0]), Host(inputs[0]), Host(inputs[1]));
        else ((IlgpuDevice)ctx.Device).Kernels(a => new ElementwiseGpu(a)).Add(Gpu(outputs[0]), Gpu(inputs[0]), Gpu(inputs[1]));
    }

    public override bool HasBackward => true;

    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads)
    {
        foreach (var dx in inputGrads)
            if (dx != null) ctx.Device.Copy(dx.Data, outputGrads[0].Data);
    }
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
