using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Graph.Ops;

/// <summary>
/// y = a @ b with numpy matmul semantics (ONNX MatMul): 2-D x 2-D, stacks of matrices with their leading dims
/// broadcast, and 1-D operands as a row (a) or a column (b) whose unit dim is dropped. Either input may be a
/// parameter. Kernels: <see cref="MatMul"/> and <see cref="MatMulGpu"/>, one GEMM per product or one for a stack
/// times a shared matrix.
/// </summary>
public sealed class MatMulOp : Op
{
    public override string Name => "MatMul";

    static MatMulShape ShapeOf(Node node, Shape a, Shape b)
    {
        try { return MatMulShape.Of(a.Dims, b.Dims); }
        catch (ArgumentException e) { throw new ArgumentException($"{node.Name} ({node.Op}): {e.Message}", e); }
    }

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 2);
        return [new Shape(ShapeOf(node, inputs[0], inputs[1]).OutputDims)];
    }

    public override OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs)
        => new(ShapeOf(node, inputs[0], inputs[1]).Flops, 4.0 * (inputs[0].Elements + inputs[1].Elements + outputs[0].Elements));

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var s = ShapeOf(node, inputs[0].Shape, inputs[1].Shape);
        if (ctx.Device is HostDevice) MatMul.ForwardHost(Host(outputs[0]), Host(inputs[0]), Host(inputs[1]), s);
        else
        {
            var k = ((IlgpuDevice)ctx.Device).Kernels(a => new MatMulGpu(a));
            k.Forward(ctx.Precision.MmaGemmVersion() ?? k.DefaultVersion, Gpu(outputs[0]), Gpu(inputs[0]), Gpu(inputs[1]), s);
        }
    }
}
