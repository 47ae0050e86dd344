using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Graph.Ops;

/// <summary>
/// Fully connected layer y = x Wᵀ + b (PyTorch's nn.Linear; ONNX Gemm with transB = 1): inputs (x (N, In),
/// W (Out, In), b (Out)), fused epilogue flag relu. Kernels: <see cref="Linear"/> and <see cref="LinearGpu"/>.
/// </summary>
public sealed class LinearOp : Op
{
    public override string Name => "Linear";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 3);
        Shape x = inputs[0], w = inputs[1], b = inputs[2];
        Require(x.Rank == 2 && w.Rank == 2, node, () => $"needs (N, in) input and (out, in) weights, got {x} and {w}");
        Require(w[1] == x[1], node, () => $"weights {w} take {w[1]} features, the input {x} has {x[1]}");
        Require(b.Rank == 1 && b[0] == w[0], node, () => $"bias {b} does not match {w[0]} outputs");
        return [new Shape(x[0], w[0])];
    }

    /// <summary>
    /// FLOPs and the bytes the kernel that runs must move: at N ≤ <see cref="LinearGpu.GemvMaxRows"/> the GEMV's one
    /// pass (W, x, b read, y written: <see cref="LinearShape.GemvBytes"/>), the quantity its fraction of memory
    /// bandwidth is measured by; above, the GEMM's operands with y read and written.
    /// </summary>
    public override OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs)
    {
        var s = new LinearShape(inputs[0][0], inputs[1][1], inputs[1][0]);
        return s.N <= LinearGpu.GemvMaxRows
            ? new(s.Flops, s.GemvBytes)
            : new(s.Flops, 4.0 * (inputs[0].Elements + inputs[1].Elements + 2 * outputs[0].Elements));
    }

    public override OpCost BackwardCost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs)
    {
        var c = Cost(node, inputs, outputs);
        return new(2 * c.Flops, 2 * c.Bytes + 4.0 * inputs[1].Elements);
    }

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        Shape x = inputs[0].Shape, w = inputs[1].Shape;
        bool relu = node.Attributes.Flag("relu");
        if (ctx.Device is HostDevice)
            Linear.ForwardHost(Host(outputs[0]), Host(inputs[0]), Host(inputs[1]), Host(inputs[2]), x[0], w[1], w[0], relu);
        else
        {
            var k = ((IlgpuDevice)ctx.Device).Kernels(a => new LinearGpu(a));
            k.Forward(ctx.Precision.MmaGemmVersion() ?? k.DefaultVersion, Gpu(outputs[0]), Gpu(inputs[0]), Gpu(inputs[1]), Gpu(inputs[2]), x[0], w[1], w[0], relu);
        }
    }

    public override bool HasBackward => true;
    public override bool BackwardReadsInput(Node node, int index, IReadOnlyList<bool> inputNeedsGrad)
        => index == 0 && inputNeedsGrad[1];
    public override bool BackwardReadsOutput(Node node, int index) => node.Attributes.Flag("relu");

    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads)
    {
        Shape x = inputs[0].Shape, w = inputs[1].Shape;
        int n = x[0], inF = w[1], outF = w[0];
        var dy = outputGrads[0];
        if (node.Attributes.Flag("relu")) ReluOp.BackwardInPlace(ctx, dy, outputs[0]);
        if (ctx.Device is HostDevice)
        {
            if (inputGrads[1] is { } dw)
                Linear.BackwardWeightHost(Host(dw), inputGrads[2] is { } db ? Host(db) : [], Host(dy), Host(inputs[0]), n, inF, outF);
            if (inputGrads[0] is { } dx)
                Linear.BackwardDataHost(Host(dx), Host(dy), Host(inputs[1]), n, inF, outF);
        }
        else
        {
            var k = ((IlgpuDevice)ctx.Device).Kernels(a => new LinearGpu(a));
            if (inputGrads[1] is { } dw)
            {
                var db = inputGrads[2];
                k.BackwardWeight(Gpu(dw), db != null ? Gpu(db) : Gpu(dw).SubView(0, 1), Gpu(dy), Gpu(inputs[0]), n, inF, outF, hasBias: db != null);
            }
            if (inputGrads[0] is { } dx)
                k.BackwardData(Gpu(dx), Gpu(dy), Gpu(inputs[1]), n, inF, outF);
        }
    }
}
