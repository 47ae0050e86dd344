using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// numpy matmul (ONNX MatMul): a stack of matrix products over broadcast leading dimensions, each product one GEMM
// of Gemm.cs (the packed host kernel, GemmGpu on ILGPU). Forward only.

/// <summary>
/// The products of y = a @ b: <see cref="Batch"/> products (M, K) x (K, N), the i-th reading a at
/// <see cref="Offsets"/>(i).A and b at .B, writing y densely. A 1-D a is a row (1, K) and a 1-D b a column (K, 1),
/// their unit dimension dropped from <see cref="OutputDims"/>, as numpy defines.
/// </summary>
public sealed class MatMulShape
{
    public int M { get; }
    public int K { get; }
    public int N { get; }
    /// <summary>The broadcast leading dimensions of y (outermost first).</summary>
    public int[] BatchDims { get; }
    public int[] OutputDims { get; }
    public long Batch { get; }
    readonly long[] aStrides, bStrides; // per batch dimension, in elements; 0 where that operand is broadcast

    MatMulShape(int m, int k, int n, int[] batchDims, int[] outputDims, long[] aStrides, long[] bStrides)
    {
        M = m; K = k; N = n; BatchDims = batchDims; OutputDims = outputDims;
        this.aStrides = aStrides; this.bStrides = bStrides;
        Batch = batchDims.Aggregate(1L, (p, d) => p * d);
    }

    /// <summary>The products of a @ b, or an error (for the caller to prefix with the node) when the shapes do not multiply.</summary>
    public static MatMulShape Of(IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        string Shapes() => $"[{string.Join(", ", a)}] @ [{string.Join(", ", b)}]";
        if (a.Count == 0 || b.Count == 0) throw new ArgumentException($"matmul of a scalar: {Shapes()}");
        var am = a.Count == 1 ? new[] { 1, a[0] } : a.ToArray();
        var bm = b.Count == 1 ? new[] { b[0], 1 } : b.ToArray();
        int m = am[^2], k = am[^1], n = bm[^1];
        if (bm[^2] != k) throw new ArgumentException($"inner dimensions differ ({k} vs {bm[^2]}): {Shapes()}");
        var aBatch = am[..^2];
        var bBatch = bm[..^2];
        var batch = StridedLayout.BroadcastDims(aBatch, bBatch)
            ?? throw new ArgumentException($"leading dimensions do not broadcast: {Shapes()}");
        var sa = StridedLayout.BroadcastStrides(batch, aBatch).Select(s => s * m * k).ToArray();
        var sb = StridedLayout.BroadcastStrides(batch, bBatch).Select(s => s * k * n).ToArray();
        var outDims = new List<int>(batch);
        if (a.Count > 1) outDims.Add(m);
        if (b.Count > 1) outDims.Add(n);
        return new MatMulShape(m, k, n, batch, [.. outDims], sa, sb);
    }

    /// <summary>Where product <paramref name="i"/> reads a and b.</summary>
    public (long A, long B) Offsets(long i)
    {
        long oa = 0, ob = 0;
        for (int d = BatchDims.Length - 1; d >= 0; d--)
        {
            long q = i / BatchDims[d], r = i - q * BatchDims[d];
            oa += r * aStrides[d]; ob += r * bStrides[d];
            i = q;
        }
        return (oa, ob);
    }

    /// <summary>
    /// Every product shares one b and a's matrices lie back to back (a is not broadcast): the stack is one GEMM of
    /// Batch·M rows, the (N, A, K) x (K, M) case of a weight matrix.
    /// </summary>
    public bool IsOneGemm => bStrides.All(s => s == 0) && aStrides.SequenceEqual(StridedLayout.DenseStrides(BatchDims).Select(s => s * M * K));

    public long ALength => Batch == 0 ? 0 : 1 + aStrides.Select((s, d) => s * (BatchDims[d] - 1)).Sum() + (long)M * K - 1;
    public long BLength => Batch == 0 ? 0 : 1 + bStrides.Select((s, d) => s * (BatchDims[d] - 1)).Sum() + (long)K * N - 1;
    public long YLength => Batch * M * N;
    public double Flops => 2.0 * Batch * M * N * K;

    internal void CheckLengths(long y, long a, long b)
    {
        Check.Length("y", y, YLength, this);
        Check.AtLeast("a", a, ALength, this);
        Check.AtLeast("b", b, BLength, this);
        if (IsOneGemm && Batch * M > int.MaxValue) throw new ArgumentException($"matmul: {Batch * M} rows exceed one GEMM's 32-bit size: {this}");
    }

    public override string ToString() => $"matmul batch [{string.Join(", ", BatchDims)}] ({M} x {K}) @ ({K} x {N})";
}

// ===== Host twin =====
public static partial class MatMul
{
    /// <summary>y = a @ b: one packed GEMM (<see cref="Gemm.Host"/>) when the stack folds into one, else one per product.</summary>
    public static void ForwardHost(Span<float> y, ReadOnlySpan<float> a, ReadOnlySpan<float> b, MatMulShape s)
    {
        s.CheckLengths(y.Length, a.Length, b.Length);
        if (s.YLength == 0) return;
        if (s.K == 0) { y.Clear(); return; }
        if (s.IsOneGemm)
        {
            Gemm.Host(y, a, b, new GemmShape((int)(s.Batch * s.M), s.N, s.K));
            return;
        }
        long mk = (long)s.M * s.K, kn = (long)s.K * s.N, mn = (long)s.M * s.N;
        for (long i = 0; i < s.Batch; i++)
        {
            var (oa, ob) = s.Offsets(i);
            Gemm.Host(y.Slice((int)(i * mn), (int)mn), a.Slice((int)oa, (int)mk), b.Slice((int)ob, (int)kn), new GemmShape(s.M, s.N, s.K));
        }
    }
}




// ===== ILGPU kernels =====

/// <summary>numpy matmul on an ILGPU accelerator: GemmGpu's default (tiled where the device allows) version per product.</summary>
public sealed class MatMulGpu : IDisposable
{
    private readonly Accelerator _acc;
    private readonly GemmGpu _gemm;

    public MatMulGpu(Accelerator accelerator)
    {
        _acc = accelerator;
        _gemm = new GemmGpu(accelerator);
    }

    /// <summary>The GEMM version <see cref="Forward(ArrayView{float}, ArrayView{float}, ArrayView{float}, MatMulShape)"/> runs.</summary>
    public GemmVersion DefaultVersion => _gemm.DefaultVersion;

    public void Forward(ArrayView<float> y, ArrayView<float> a, ArrayView<float> b, MatMulShape s)
        => Forward(DefaultVersion, y, a, b, s);

    /// <summary>y = a @ b with the named GEMM version (e.g. a tensor-core one).</summary>
    public void Forward(GemmVersion version, ArrayView<float> y, ArrayView<float> a, ArrayView<float> b, MatMulShape s)
    {
        s.CheckLengths(y.Length, a.Length, b.Length);
        if (s.YLength == 0) return;
        if (s.K == 0) { y.MemSetToZero(_acc.DefaultStream); return; }
        if (s.IsOneGemm)
        {
            _gemm.Run(version, y, a, b, new GemmShape((int)(s.Batch * s.M), s.N, s.K));
            return;
        }
        long mk = (long)s.M * s.K, kn = (long)s.K * s.N, mn = (long)s.M * s.N;
        for (long i = 0; i < s.Batch; i++)
        {
            var (oa, ob) = s.Offsets(i);
            _gemm.Run(version, y.SubView(i * mn, mn), a.SubView(oa, mk), b.SubView(ob, kn), new GemmShape(s.M, s.N, s.K));
        }
    }

    public void Dispose() => _gemm.Dispose();
}
