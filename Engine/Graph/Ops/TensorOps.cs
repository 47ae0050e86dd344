using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Graph.Ops;

// Ops that move or relabel elements without arithmetic: Concat, Split, Transpose (kernels in Layout.cs) and the
// views Reshape and Identity. Axes are ≥ 1: the batch stays dimension 0, so plans can run any batch in chunks.

/// <summary>Product of dims [from, to) in 64 bits.</summary>
file static class Dims
{
    public static long Product(Shape s, int from, int to)
    {
        long p = 1;
        for (int d = from; d < to; d++) p *= s[d];
        return p;
    }
}

/// <summary>Concatenation along attribute <c>axis</c> (≥ 1) of any number of inputs whose other dims agree.</summary>
public sealed class ConcatOp : Op
{
    public override string Name => "Concat";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Require(inputs.Count >= 1, node, () => "takes at least one input");
        var first = inputs[0];
        int axis = node.Attributes.Int("axis", 1);
        Require(axis >= 1 && axis < first.Rank, node, () => $"axis {axis} is not one of 1 .. {first.Rank - 1} of {first} (0 is the batch)");
        var dims = first.Dims.ToArray();
        long total = 0;
        foreach (var s in inputs)
        {
            Require(s.Rank == first.Rank && Enumerable.Range(0, s.Rank).All(d => d == axis || s[d] == first[d]), node,
                () => $"inputs {string.Join(", ", inputs)} differ outside axis {axis}");
            total += s[axis];
        }
        Require(total <= int.MaxValue, node, () => $"axis {axis} would have {total} elements");
        dims[axis] = (int)total;
        return [new Shape(dims)];
    }

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var y = outputs[0].Shape;
        int axis = node.Attributes.Int("axis", 1), at = 0;
        long outer = Dims.Product(y, 0, axis), inner = Dims.Product(y, axis + 1, y.Rank);
        foreach (var x in inputs)
        {
            var block = BlockCopyShape.Concat(outer, inner, y[axis], at, x.Shape[axis]);
            if (ctx.Device is HostDevice) Layout.BlockCopyHost(Host(outputs[0]), Host(x), block);
            else ((IlgpuDevice)ctx.Device).Kernels(a => new LayoutGpu(a)).BlockCopy(Gpu(outputs[0]), Gpu(x), block);
            at += x.Shape[axis];
        }
    }
}

/// <summary>
/// Split along attribute <c>axis</c> (≥ 1) into parts of the sizes in ints <c>split</c> (their sum is the axis
/// length; without it, equal parts, one per output). One output per part.
/// </summary>
public sealed class SplitOp : Op
{
    public override string Name => "Split";

    static int[] Sizes(Node node, Shape x, int axis)
    {
        if (node.Attributes.Has("split")) return node.Attributes.Ints("split", []);
        int parts = node.Outputs.Length;
        Require(parts > 0 && x[axis] % parts == 0, node, () => $"axis {axis} of {x} does not split into {parts} equal parts; give 'split'");
        return Enumerable.Repeat(x[axis] / parts, parts).ToArray();
    }

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        var x = inputs[0];
        int axis = node.Attributes.Int("axis", 1);
        Require(axis >= 1 && axis < x.Rank, node, () => $"axis {axis} is not one of 1 .. {x.Rank - 1} of {x} (0 is the batch)");
        var sizes = Sizes(node, x, axis);
        Require(sizes.Length == node.Outputs.Length, node, () => $"split [{string.Join(", ", sizes)}] has {sizes.Length} parts for {node.Outputs.Length} outputs");
        Require(sizes.All(s => s >= 0) && sizes.Sum(s => (long)s) == x[axis], node,
            () => $"split [{string.Join(", ", sizes)}] does not add up to axis {axis} of {x} ({x[axis]})");
        return sizes.Select(size =>
        {
            var d = x.Dims.ToArray();
            d[axis] = size;
            return new Shape(d);
        }).ToArray();
    }

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var x = inputs[0].Shape;
        int axis = node.Attributes.Int("axis", 1), at = 0;
        long outer = Dims.Product(x, 0, axis), inner = Dims.Product(x, axis + 1, x.Rank);
        foreach (var y in outputs)
        {
            var block = BlockCopyShape.Split(outer, inner, x[axis], at, y.Shape[axis]);
            if (ctx.Device is HostDevice) Layout.BlockCopyHost(Host(y), Host(inputs[0]), block);
            else ((IlgpuDevice)ctx.Device).Kernels(a => new LayoutGpu(a)).BlockCopy(Gpu(y), Gpu(inputs[0]), block);
            at += y.Shape[axis];
        }
    }
}

/// <summary>y = x with its axes permuted by ints <c>perm</c> (y's axis d is x's axis perm[d]); perm[0] must be 0, rank ≤ 6.</summary>
public sealed class TransposeOp : Op
{
    public override string Name => "Transpose";

    static int[] Perm(Node node, int rank) => node.Attributes.Ints("perm", Enumerable.Range(0, rank).Reverse().ToArray());

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        var x = inputs[0];
        var perm = Perm(node, x.Rank);
        Require(perm.Length == x.Rank && perm.Order().SequenceEqual(Enumerable.Range(0, x.Rank)), node,
            () => $"perm [{string.Join(", ", perm)}] is not a permutation of the {x.Rank} axes of {x}");
        Require(perm[0] == 0, node, () => $"perm [{string.Join(", ", perm)}] moves the batch axis; only perms that keep axis 0 first are supported");
        Require(x.Rank <= StridedLayout.MaxGpuRank, node, () => $"rank {x.Rank} of {x} is above {StridedLayout.MaxGpuRank}");
        return [new Shape(perm.Select(p => x[p]).ToArray())];
    }

    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs)
    {
        var x = inputs[0].Shape;
        var layout = StridedLayout.Transpose(x.Dims, Perm(node, x.Rank));
        if (ctx.Device is HostDevice) Layout.GatherHost(Host(outputs[0]), Host(inputs[0]), layout);
        else ((IlgpuDevice)ctx.Device).Kernels(a => new LayoutGpu(a)).Gather(Gpu(outputs[0]), Gpu(inputs[0]), layout);
    }
}

/// <summary>
/// The same elements under ints <c>shape</c>, the full target shape: an entry 0 copies the input's dim at that
/// index, one entry may be -1 (inferred from the element count). A view. (The planner refuses a reshape of an
/// activation that changes its batch dim: write 0 for it.)
/// </summary>
public sealed class ReshapeOp : Op
{
    public override string Name => "Reshape";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        var x = inputs[0];
        Require(node.Attributes.Has("shape"), node, () => "needs ints 'shape'");
        var target = node.Attributes.Ints("shape", []);
        string Target() => $"[{string.Join(", ", target)}]";
        var dims = new long[target.Length];
        int inferred = -1;
        for (int d = 0; d < target.Length; d++)
        {
            int t = target[d], k = d;
            if (t == 0)
            {
                Require(d < x.Rank, node, () => $"shape {Target()} copies dim {k} (0) that {x} does not have");
                dims[d] = x[d];
            }
            else if (t == -1)
            {
                Require(inferred < 0, node, () => $"shape {Target()} has more than one -1");
                inferred = d;
            }
            else
            {
                Require(t > 0, node, () => $"shape {Target()} has a negative size {t}");
                dims[d] = t;
            }
        }
        if (inferred >= 0)
        {
            long known = 1;
            for (int d = 0; d < dims.Length; d++) if (d != inferred) known *= dims[d];
            Require(known > 0 && x.Elements % known == 0, node, () => $"cannot infer the -1 of {Target()} from {x} ({x.Elements} elements)");
            dims[inferred] = x.Elements / known;
        }
        Require(dims.All(d => d <= int.MaxValue), node, () => $"shape {Target()} of {x} has a dimension above 2^31");
        var y = new Shape(dims.Select(d => (int)d).ToArray());
        Require(y.Elements == x.Elements, node, () => $"cannot reshape {x} ({x.Elements} elements) to {Target()} = {y} ({y.Elements} elements)");
        return [y];
    }

    public override OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs) => default;
    public override bool IsView(Node node, bool training) => true;
    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs) { }
    public override bool HasBackward => true;
    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads) { }
}

/// <summary>y = x: a view.</summary>
public sealed class IdentityOp : Op
{
    public override string Name => "Identity";

    public override Shape[] InferShapes(Node node, IReadOnlyList<Shape> inputs)
    {
        Arity(node, inputs, 1);
        return [inputs[0]];
    }

    public override OpCost Cost(Node node, IReadOnlyList<Shape> inputs, IReadOnlyList<Shape> outputs) => default;
    public override bool IsView(Node node, bool training) => true;
    public override void Forward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs) { }
    public override bool HasBackward => true;
    public override void Backward(OpContext ctx, Node node, Tensor[] inputs, Tensor[] outputs, Tensor[] outputGrads, Tensor?[] inputGrads) { }
}
