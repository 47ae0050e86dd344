namespace Tp7.Engine.Graph;

/// <summary>
/// A tensor's dimensions, outermost first (NCHW for images, (N, features) for fully connected values). Rank 0 ([],
/// <see cref="Scalar"/> or <c>default</c>) is a scalar of one element.
/// </summary>
public readonly struct Shape : IEquatable<Shape>
{
    readonly int[] dims;

    public Shape(params int[] dims)
    {
        foreach (var d in dims)
            if (d < 0) throw new ArgumentException($"negative dimension in [{string.Join(", ", dims)}]");
        this.dims = (int[])dims.Clone();
    }

    public static Shape Scalar => new([]);

    public int Rank => dims?.Length ?? 0;
    public int this[int axis] => dims[axis];
    public IReadOnlyList<int> Dims => dims ?? [];
    /// <summary>Product of the dimensions (64-bit: VGG16's conv1 activations at batch 64 pass 2^31 bytes).</summary>
    public long Elements
    {
        get
        {
            long e = 1;
            foreach (var d in Dims) e *= d;
            return e;
        }
    }

    /// <summary>Elements of one sample: every dimension but the first.</summary>
    public long PerSample => Rank == 0 ? 1 : Elements / Math.Max(1, dims[0]);

    /// <summary>This shape with the first (batch) dimension replaced.</summary>
    public Shape WithBatch(int n)
    {
        if (Rank == 0) throw new ArgumentException("a scalar shape [] has no batch dimension");
        var d = (int[])dims.Clone();
        d[0] = n;
        return new Shape(d);
    }

    public bool Equals(Shape other) => Dims.SequenceEqual(other.Dims);
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);
    public override int GetHashCode() => Dims.Aggregate(17, (h, d) => h * 31 + d);
    public static bool operator ==(Shape a, Shape b) => a.Equals(b);
    public static bool operator !=(Shape a, Shape b) => !a.Equals(b);
    public override string ToString() => $"[{string.Join(", ", Dims)}]";
}

public enum DType { F32 }

/// <summary>
/// A tensor: (buffer, offset, shape, dtype). <see cref="Data"/> is a view of exactly <see cref="Shape"/>'s elements
/// at its offset in a device buffer; reshapes and flattens are new <see cref="Tensor"/>s over the same view.
/// </summary>
public sealed record Tensor(Devices.DeviceTensor Data, Shape Shape, DType DType = DType.F32)
{
    public long Elements => Shape.Elements;

    /// <summary>The same elements under another shape of equal size (a view, no copy).</summary>
    public Tensor Reshape(Shape shape)
    {
        if (shape.Elements != Shape.Elements)
            throw new ArgumentException($"cannot view a tensor of shape {Shape} as {shape}");
        return this with { Shape = shape };
    }
}
