using System.Numerics;
using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Binary element-wise arithmetic (Add, Sub, Mul, Div) with numpy/ONNX multidirectional broadcasting, and the strided
// layout (dimensions, per-operand strides, 0 where an operand is broadcast) that it shares with Transpose.
// Forward only: the graph's Add keeps its equal-shape backward in Engine/Graph/Ops.

/// <summary>The arithmetic of a binary element-wise op.</summary>
public enum BinaryKind { Add, Sub, Mul, Div }

/// <summary>
/// An iteration over a dense output of <see cref="Dims"/> (outermost first) reading up to two operands at
/// <see cref="AStrides"/> / <see cref="BStrides"/> (elements; 0 along a broadcast dimension). Built collapsed:
/// size-1 dimensions dropped and neighbours merged where both operands step through them as one, so
/// [2,3,4,5] + [3,1,1] iterates (2, 3, 20) with b strides (0, 1, 0), and equal shapes iterate one dimension.
/// </summary>
public sealed class StridedLayout
{
    /// <summary>The most dimensions the ILGPU kernels take after collapsing.</summary>
    public const int MaxGpuRank = 6;

    public int[] Dims { get; }
    public long[] AStrides { get; }
    public long[] BStrides { get; }
    public int Rank => Dims.Length;
    public long Elements { get; }
    /// <summary>Length of the innermost dimension; along it each operand steps by 1 or (broadcast) by 0.</summary>
    public int Inner => Dims[^1];

    StridedLayout(int[] dims, long[] a, long[] b)
    {
        Dims = dims; AStrides = a; BStrides = b;
        Elements = dims.Aggregate(1L, (p, d) => p * d);
    }

    /// <summary>Dense strides of a shape (outermost first).</summary>
    public static long[] DenseStrides(IReadOnlyList<int> dims)
    {
        var s = new long[dims.Count];
        long acc = 1;
        for (int d = dims.Count - 1; d >= 0; d--) { s[d] = acc; acc *= dims[d]; }
        return s;
    }

    /// <summary>Numpy broadcasting of two shapes (right-aligned; each pair of dims equal or one of them 1), or null.</summary>
    public static int[]? BroadcastDims(IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        int r = Math.Max(a.Count, b.Count);
        var y = new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i < r - a.Count ? 1 : a[i - (r - a.Count)];
            int db = i < r - b.Count ? 1 : b[i - (r - b.Count)];
            if (da != db && da != 1 && db != 1) return null;
            y[i] = da == 1 ? db : da;
        }
        return y;
    }

    /// <summary>Strides that read a dense operand of <paramref name="operand"/> dims broadcast to <paramref name="output"/> dims.</summary>
    public static long[] BroadcastStrides(IReadOnlyList<int> output, IReadOnlyList<int> operand)
    {
        var dense = DenseStrides(operand);
        var s = new long[output.Count];
        int lead = output.Count - operand.Count;
        for (int i = lead; i < output.Count; i++)
            s[i] = operand[i - lead] == 1 ? 0 : dense[i - lead];
        return s;
    }

    /// <summary>The layout of y = a ∘ b for dense a and b broadcast to y's dims (which must be their broadcast).</summary>
    public static StridedLayout Binary(IReadOnlyList<int> y, IReadOnlyList<int> a, IReadOnlyList<int> b)
        => Collapse(y, BroadcastStrides(y, a), BroadcastStrides(y, b));

    /// <summary>The layout of y = transpose(x, perm): y's dim d walks x's dim perm[d] (the B strides are unused).</summary>
    public static StridedLayout Transpose(IReadOnlyList<int> x, IReadOnlyList<int> perm)
    {
        var dense = DenseStrides(x);
        var dims = perm.Select(p => x[p]).ToArray();
        return Collapse(dims, perm.Select(p => dense[p]).ToArray(), new long[dims.Length]);
    }

    /// <summary>Drops size-1 dimensions and merges a dimension into the next inner one where both strides allow it.</summary>
    public static StridedLayout Collapse(IReadOnlyList<int> dims, long[] a, long[] b)
    {
        var d = new List<int>(); var sa = new List<long>(); var sb = new List<long>();
        for (int i = 0; i < dims.Count; i++)
        {
            if (dims[i] == 1) continue;
            d.Add(dims[i]); sa.Add(a[i]); sb.Add(b[i]);
        }
        if (dims.Any(x => x == 0)) { d.Clear(); sa.Clear(); sb.Clear(); d.Add(0); sa.Add(1); sb.Add(1); }
        if (d.Count == 0) { d.Add(1); sa.Add(1); sb.Add(1); }
        for (int i = d.Count - 2; i >= 0; i--)
        {
            if (sa[i] != sa[i + 1] * d[i + 1] || sb[i] != sb[i + 1] * d[i + 1]) continue;
            d[i + 1] *= d[i]; d.RemoveAt(i); sa.RemoveAt(i); sb.RemoveAt(i);
        }
        return new StridedLayout([.. d], [.. sa], [.. sb]);
    }

    /// <summary>Element offsets of the operands at the start of row <paramref name="row"/> (all dims but the innermost).</summary>
    public (long A, long B) RowOffsets(long row)
    {
        long oa = 0, ob = 0;
        for (int d = Rank - 2; d >= 0; d--)
        {
            long q = row / Dims[d];
            long i = row - q * Dims[d];
            oa += i * AStrides[d]; ob += i * BStrides[d];
            row = q;
        }
        return (oa, ob);
    }

    public override string ToString()
        => $"dims [{string.Join(", ", Dims)}] a strides [{string.Join(", ", AStrides)}] b strides [{string.Join(", ", BStrides)}]";
}

// ===== Host twin =====
public static partial class Broadcast
{
    /// <summary>y = a ∘ b over <paramref name="layout"/> (a and b dense, of the lengths the strides reach).</summary>
    /// <remarks>Rows of the collapsed layout in parallel; each row is one vectorised run with either operand
    /// contiguous or a repeated scalar, which covers equal shapes, scalars, per-channel and trailing-dim broadcasts.</remarks>
    public static void BinaryHost(BinaryKind kind, Span<float> y, ReadOnlySpan<float> a, ReadOnlySpan<float> b, StridedLayout layout)
    {
        switch (kind)
        {
            case BinaryKind.Add: BinaryHost<AddF>(y, a, b, layout); break;
            case BinaryKind.Sub: BinaryHost<SubF>(y, a, b, layout); break;
            case BinaryKind.Mul: BinaryHost<MulF>(y, a, b, layout); break;
            case BinaryKind.Div: BinaryHost<DivF>(y, a, b, layout); break;
            default: throw new ArgumentOutOfRangeException(nameof(kind), kind, "binary: unknown op");
        }
    }

    /// <summary>The specification: one element at a time through the strides, in double-free float arithmetic.</summary>
    public static void BinaryHost_V1Naive(BinaryKind kind, Span<float> y, ReadOnlySpan<float> a, ReadOnlySpan<float> b, StridedLayout layout)
    {
        CheckLengths(y.Length, a.Length, b.Length, layout);
        long inner = layout.Inner;
        for (long i = 0; i < layout.Elements; i++)
        {
            var (oa, ob) = layout.RowOffsets(i / inner);
            long j = i % inner;
            y[(int)i] = Apply(kind, a[(int)(oa + j * layout.AStrides[^1])], b[(int)(ob + j * layout.BStrides[^1])]);
        }
    }

    public static float Apply(BinaryKind kind, float x, float z) => kind switch
    {
        BinaryKind.Add => x + z,
        BinaryKind.Sub => x - z,
        BinaryKind.Mul => x * z,
        _ => x / z,
    };

    /// <summary>Lengths the layout needs: y dense, each operand up to its farthest strided element.</summary>
    internal static void CheckLengths(long y, long a, long b, StridedLayout layout)
    {
        Check.Length("y", y, layout.Elements, layout);
        if (layout.Elements == 0) return;
        long Reach(long[] s) => 1 + s.Select((st, d) => st * (layout.Dims[d] - 1)).Sum();
        Check.AtLeast("a", a, Reach(layout.AStrides), layout);
        Check.AtLeast("b", b, Reach(layout.BStrides), layout);
    }

    static void BinaryHost<TOp>(Span<float> y, ReadOnlySpan<float> a, ReadOnlySpan<float> b, StridedLayout layout) where TOp : struct, IBinaryF
    {
        CheckLengths(y.Length, a.Length, b.Length, layout);
        long total = layout.Elements;
        if (total == 0) return;
        int inner = layout.Inner;
        long rows = total / inner;
        bool aRun = layout.AStrides[^1] != 0, bRun = layout.BStrides[^1] != 0;
        if (total < 1 << 15)
        {
            for (long r = 0; r < rows; r++)
            {
                var (oa, ob) = layout.RowOffsets(r);
                Row<TOp>(y.Slice((int)(r * inner), inner), a.Slice((int)oa, aRun ? inner : 1), aRun, b.Slice((int)ob, bRun ? inner : 1), bRun);
            }
            return;
        }
        unsafe
        {
            fixed (float* py = y) fixed (float* pa = a) fixed (float* pb = b)
            {
                nint yp = (nint)py, ap = (nint)pa, bp = (nint)pb;
                // Tasks of about 64K elements: pieces of the one row of equal shapes, else whole rows.
                const int Chunk = 1 << 16;
                if (rows == 1)
                {
                    Parallel.For(0, (int)((total + Chunk - 1) / Chunk), c =>
                    {
                        long s = (long)c * Chunk;
                        int len = (int)Math.Min(Chunk, total - s);
                        Row<TOp>(new Span<float>((float*)yp + s, len), new ReadOnlySpan<float>((float*)ap + (aRun ? s : 0), aRun ? len : 1), aRun,
                            new ReadOnlySpan<float>((float*)bp + (bRun ? s : 0), bRun ? len : 1), bRun);
                    });
                    return;
                }
                long rowsPerTask = Math.Max(1, Chunk / inner);
                Parallel.For(0, (int)((rows + rowsPerTask - 1) / rowsPerTask), c =>
                {
                    long r0 = c * rowsPerTask, r1 = Math.Min(rows, r0 + rowsPerTask);
                    for (long r = r0; r < r1; r++)
                    {
                        var (oa, ob) = layout.RowOffsets(r);
                        Row<TOp>(new Span<float>((float*)yp + r * inner, inner), new ReadOnlySpan<float>((float*)ap + oa, aRun ? inner : 1), aRun,
                            new ReadOnlySpan<float>((float*)bp + ob, bRun ? inner : 1), bRun);
                    }
                });
            }
        }
    }

    /// <summary>One run y[j] = a[j or 0] ∘ b[j or 0], Vector&lt;float&gt; lanes at a time.</summary>
    static void Row<TOp>(Span<float> y, ReadOnlySpan<float> a, bool aRun, ReadOnlySpan<float> b, bool bRun) where TOp : struct, IBinaryF
    {
        int n = y.Length, j = 0, w = Vector<float>.Count;
        var op = default(TOp);
        if (aRun && bRun)
        {
            for (; j + w <= n; j += w) op.Apply(new Vector<float>(a[j..]), new Vector<float>(b[j..])).CopyTo(y[j..]);
            for (; j < n; j++) y[j] = op.Apply(a[j], b[j]);
        }
        else if (aRun)
        {
            float s = b[0];
            var sv = new Vector<float>(s);
            for (; j + w <= n; j += w) op.Apply(new Vector<float>(a[j..]), sv).CopyTo(y[j..]);
            for (; j < n; j++) y[j] = op.Apply(a[j], s);
        }
        else if (bRun)
        {
            float s = a[0];
            var sv = new Vector<float>(s);
            for (; j + w <= n; j += w) op.Apply(sv, new Vector<float>(b[j..])).CopyTo(y[j..]);
            for (; j < n; j++) y[j] = op.Apply(s, b[j]);
        }
        else y.Fill(op.Apply(a[0], b[0]));
    }

    interface IBinaryF
    {
        float Apply(float x, float z);
        Vector<float> Apply(Vector<float> x, Vector<float> z);
    }
    readonly struct AddF : IBinaryF { public float Apply(float x, float z) => x + z; public Vector<float> Apply(Vector<float> x, Vector<float> z) => x + z; }
    readonly struct SubF : IBinaryF { public float Apply(float x, float z) => x - z; public Vector<float> Apply(Vector<float> x, Vector<float> z) => x - z; }
    readonly struct MulF : IBinaryF { public float Apply(float x, float z) => x * z; public Vector<float> Apply(Vector<float> x, Vector<float> z) => x * z; }
    readonly struct DivF : IBinaryF { public float Apply(float x, float z) => x / z; public Vector<float> Apply(Vector<float> x, Vector<float> z) => x / z; }
}




// ===== ILGPU kernels =====

/// <summary>
/// A <see cref="StridedLayout"/> as a kernel argument: up to six collapsed dimensions, innermost first (D0 is the
/// innermost), with both operands' strides. Unused dimensions are 1.
/// </summary>
internal readonly struct StridedArgs
{
    public readonly int Rank;
    public readonly long D0, D1, D2, D3, D4, D5;
    public readonly long A0, A1, A2, A3, A4, A5;
    public readonly long B0, B1, B2, B3, B4, B5;

    public StridedArgs(StridedLayout l)
    {
        if (l.Rank > StridedLayout.MaxGpuRank)
            throw new NotSupportedException($"strided kernel: {l.Rank} dimensions after collapsing ({l}); the ILGPU kernels take {StridedLayout.MaxGpuRank}");
        Rank = l.Rank;
        long D(int k) => k < l.Rank ? l.Dims[l.Rank - 1 - k] : 1;
        long A(int k) => k < l.Rank ? l.AStrides[l.Rank - 1 - k] : 0;
        long B(int k) => k < l.Rank ? l.BStrides[l.Rank - 1 - k] : 0;
        D0 = D(0); D1 = D(1); D2 = D(2); D3 = D(3); D4 = D(4); D5 = D(5);
        A0 = A(0); A1 = A(1); A2 = A(2); A3 = A(3); A4 = A(4); A5 = A(5);
        B0 = B(0); B1 = B(1); B2 = B(2); B3 = B(3); B4 = B(4); B5 = B(5);
    }

    /// <summary>Offsets of both operands for dense output index <paramref name="i"/>; only the used dimensions divide.</summary>
    public void Offsets(long i, out long oa, out long ob)
    {
        long q = i / D0, r = i - q * D0;
        oa = r * A0; ob = r * B0;
        if (Rank > 1) { i = q; q = i / D1; r = i - q * D1; oa += r * A1; ob += r * B1; }
        if (Rank > 2) { i = q; q = i / D2; r = i - q * D2; oa += r * A2; ob += r * B2; }
        if (Rank > 3) { i = q; q = i / D3; r = i - q * D3; oa += r * A3; ob += r * B3; }
        if (Rank > 4) { i = q; q = i / D4; r = i - q * D4; oa += r * A4; ob += r * B4; }
        if (Rank > 5) { i = q; r = i - i / D5 * D5; oa += r * A5; ob += r * B5; }
    }
}

/// <summary>
/// <see cref="StridedArgs"/> for tensors whose every offset fits an int (the launcher checks the output and both
/// operands are under 2^31 elements): 32-bit strides, and each collapsed dimension a <see cref="FastDivmod"/>, so a
/// flat index splits into coordinates with multiply-shifts instead of up to six calls of the 64-bit division routine.
/// </summary>
internal readonly struct StridedArgs32
{
    public readonly int Rank;
    public readonly FastDivmod D0, D1, D2, D3, D4;
    public readonly int A0, A1, A2, A3, A4, A5;
    public readonly int B0, B1, B2, B3, B4, B5;

    public StridedArgs32(StridedLayout l)
    {
        if (l.Rank > StridedLayout.MaxGpuRank)
            throw new NotSupportedException($"strided kernel: {l.Rank} dimensions after collapsing ({l}); the ILGPU kernels take {StridedLayout.MaxGpuRank}");
        Rank = l.Rank;
        FastDivmod D(int k) => new(k < l.Rank ? Math.Max(1, l.Dims[l.Rank - 1 - k]) : 1);
        int A(int k) => k < l.Rank ? checked((int)l.AStrides[l.Rank - 1 - k]) : 0;
        int B(int k) => k < l.Rank ? checked((int)l.BStrides[l.Rank - 1 - k]) : 0;
        D0 = D(0); D1 = D(1); D2 = D(2); D3 = D(3); D4 = D(4);
        A0 = A(0); A1 = A(1); A2 = A(2); A3 = A(3); A4 = A(4); A5 = A(5);
        B0 = B(0); B1 = B(1); B2 = B(2); B3 = B(3); B4 = B(4); B5 = B(5);
    }

    /// <summary>Whether every index and offset of <paramref name="l"/> over operands of these lengths fits an int.</summary>
    public static bool Fits(StridedLayout l, long a, long b)
        => KernelIndex.Fits32(l.Elements) && KernelIndex.Fits32(a) && KernelIndex.Fits32(b);

    /// <summary>Offsets of both operands for dense output index <paramref name="i"/>; only the used dimensions divide
    /// (the outermost needs no division: what is left of the index is its coordinate).</summary>
    public void Offsets(int i, out int oa, out int ob)
    {
        int q = D0.DivRem(i, out int r);
        oa = r * A0; ob = r * B0;
        if (Rank > 1) { q = D1.DivRem(q, out r); oa += r * A1; ob += r * B1; }
        if (Rank > 2) { q = D2.DivRem(q, out r); oa += r * A2; ob += r * B2; }
        if (Rank > 3) { q = D3.DivRem(q, out r); oa += r * A3; ob += r * B3; }
        if (Rank > 4) { q = D4.DivRem(q, out r); oa += r * A4; ob += r * B4; }
        if (Rank > 5) { oa += q * A5; ob += q * B5; }
    }
}

/// <summary>Broadcasting Add/Sub/Mul/Div on an ILGPU accelerator: a flat kernel for one collapsed dimension, a strided one otherwise.</summary>
public sealed class BroadcastGpu
{
    private readonly Accelerator _acc;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, long, long> _flat;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, StridedArgs> _strided;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> _flatVec4;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, StridedArgs32> _strided32;

    /// <summary>
    /// Forces the general kernels (64-bit indices, scalar loads) that tensors of 2^31 elements or more and views not on
    /// a 16-byte boundary take, so tests cover them on small shapes.
    /// </summary>
    public bool UseGeneralKernels { get; set; }

    public BroadcastGpu(Accelerator accelerator)
    {
        _acc = accelerator;
        _flatVec4 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(BinaryFlatVec4Kernel);
        _strided32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, StridedArgs32>(BinaryStrided32Kernel);
        _flat = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, long, long>(BinaryFlatKernel);
        _strided = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, StridedArgs>(BinaryStridedKernel);
    }

    /// <summary>y = a ∘ b over <paramref name="layout"/>, as <see cref="Broadcast.BinaryHost"/>.</summary>
    public void Binary(BinaryKind kind, ArrayView<float> y, ArrayView<float> a, ArrayView<float> b, StridedLayout layout)
    {
        Broadcast.CheckLengths(y.Length, a.Length, b.Length, layout);
        if (layout.Elements == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        var grid = Accelerators.GridStride(_acc, layout.Elements, gs);
        long sa = layout.AStrides[0], sb = layout.BStrides[0];
        if (layout.Rank == 1)
        {
            // A broadcast scalar operand is read once per thread, so only a streamed one needs the 16-byte boundary.
            bool vec4 = !UseGeneralKernels && StridedArgs32.Fits(layout, a.Length, b.Length) && KernelIndex.Aligned16(y)
                        && (sa == 0 || KernelIndex.Aligned16(a)) && (sb == 0 || KernelIndex.Aligned16(b));
            if (vec4) _flatVec4(Accelerators.GridStride(_acc, (layout.Elements + 3) / 4, gs), y, a, b, (int)kind, (int)sa, (int)sb);
            else _flat(grid, y, a, b, (int)kind, sa, sb);
        }
        else if (!UseGeneralKernels && StridedArgs32.Fits(layout, a.Length, b.Length))
            _strided32(grid, y, a, b, (int)kind, new StridedArgs32(layout));
        else _strided(grid, y, a, b, (int)kind, new StridedArgs(layout));
    }

    /// <summary>
    /// <see cref="BinaryFlatKernel"/> with 16-byte loads and stores over the first Length / 4 float4s (launcher: under
    /// 2^31 elements, streamed views 16-byte aligned); a broadcast operand (stride 0) is one scalar read before the loop.
    /// The last Length % 4 elements go to the first threads.
    /// </summary>
    private static void BinaryFlatVec4Kernel(ArrayView<float> y, ArrayView<float> a, ArrayView<float> b, int kind, int sa, int sb)
    {
        int n = (int)y.Length, n4 = n >> 2, stride = Grid.DimX * Group.DimX, g = Grid.GlobalIndex.X;
        var y4 = y.Cast<Float4>();
        var a4 = a.Cast<Float4>();
        var b4 = b.Cast<Float4>();
        float as0 = a[0], bs0 = b[0];
        for (int i = g; i < n4; i += stride)
        {
            Float4 u = sa != 0 ? a4[i] : new Float4(as0, as0, as0, as0);
            Float4 v = sb != 0 ? b4[i] : new Float4(bs0, bs0, bs0, bs0);
            y4[i] = new Float4(Apply(kind, u.X, v.X), Apply(kind, u.Y, v.Y), Apply(kind, u.Z, v.Z), Apply(kind, u.W, v.W));
        }
        int t = (n4 << 2) + g;
        if (t < n) y[t] = Apply(kind, a[t * sa], b[t * sb]);
    }

    /// <summary><see cref="BinaryStridedKernel"/> with 32-bit indices and multiply-shift coordinates (<see cref="StridedArgs32"/>).</summary>
    private static void BinaryStrided32Kernel(ArrayView<float> y, ArrayView<float> a, ArrayView<float> b, int kind, StridedArgs32 g)
    {
        int n = (int)y.Length, stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            g.Offsets(i, out int oa, out int ob);
            y[i] = Apply(kind, a[oa], b[ob]);
        }
    }

    private static float Apply(int kind, float x, float z)
        => kind == 0 ? x + z : kind == 1 ? x - z : kind == 2 ? x * z : x / z;

    /// <summary>y[i] = a[i·sa] ∘ b[i·sb], sa and sb 0 or 1: equal shapes and scalar operands.</summary>
    private static void BinaryFlatKernel(ArrayView<float> y, ArrayView<float> a, ArrayView<float> b, int kind, long sa, long sb)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < y.Length; i += stride) y[i] = Apply(kind, a[i * sa], b[i * sb]);
    }

    private static void BinaryStridedKernel(ArrayView<float> y, ArrayView<float> a, ArrayView<float> b, int kind, StridedArgs g)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < y.Length; i += stride)
        {
            g.Offsets(i, out long oa, out long ob);
            y[i] = Apply(kind, a[oa], b[ob]);
        }
    }
}
