using FsCheck;
using FsCheck.Xunit;
using Tp7.Engine.Kernels;

namespace Tp7.Tests;

/// <summary>
/// Fast host ops against their readable V1 specification. Inputs are uniform in [-1, 1]; tolerances are
/// |Δ| ≤ atol + rtol·|ref| per element (stated per test). The fast versions sum in a different order (FMA,
/// K-blocks of 256), so they agree with V1 to rounding, not to the bit.
/// </summary>
public class HostOpsTests
{
    // GEMM and conv: K (or C·R·S) ≤ ~700 terms of products ≤ 1 in magnitude; float rounding of both sides stays
    // well below 1e-4 absolute. A wrong index, transpose or missing term moves results by ~0.1 or more.
    const float GemmAtol = 1e-4f, GemmRtol = 1e-4f;

    static float[] Random(int seed, long n, float scale = 1f)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (long i = 0; i < n; i++) v[i] = scale * (2f * rng.NextSingle() - 1f);
        return v;
    }

    /// <summary>Fails with the worst element (by how far it exceeds its tolerance), both values and the shape.</summary>
    internal static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float atol, float rtol, object shape)
    {
        Assert.Equal(expected.Length, actual.Length);
        int worst = -1;
        double worstExcess = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            float e = expected[i], a = actual[i];
            if (float.IsNaN(e) && float.IsNaN(a)) continue;
            double excess = Math.Abs((double)e - a) - (atol + rtol * Math.Abs((double)e));
            if (double.IsNaN(excess) || excess > worstExcess || (excess > 0 && worst < 0))
            {
                worst = i; worstExcess = double.IsNaN(excess) ? double.PositiveInfinity : excess;
            }
        }
        if (worst >= 0)
            Assert.Fail($"{shape}: worst element [{worst}] expected {expected[worst]:R}, got {actual[worst]:R} " +
                        $"(|Δ| = {Math.Abs(expected[worst] - actual[worst]):G3}, tolerance {atol:G3} + {rtol:G3}·|ref|)");
    }

    static void CheckGemm(GemmShape s, int seed, bool portable, bool thinV1 = false)
    {
        int lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        var a = Random(seed, s.TransA ? (long)s.K * lda : (long)s.M * lda);
        var b = Random(seed + 1, s.TransB ? (long)s.N * ldb : (long)s.K * ldb);
        // With beta = 0, C must not be read: start it at NaN so a read shows up in every element.
        var c0 = s.Beta == 0f ? Enumerable.Repeat(float.NaN, s.M * ldc).ToArray() : Random(seed + 2, (long)s.M * ldc);
        var expected = (float[])c0.Clone();
        var actual = (float[])c0.Clone();
        Gemm.Host_V1Naive(expected, a, b, s);
        if (portable) Gemm.Host_V2BlockedPortable(actual, a, b, s);
        else if (thinV1) Gemm.Host_V2BlockedThinV1(actual, a, b, s);
        else Gemm.Host_V2Blocked(actual, a, b, s);
        // Padding columns between N and ldc must be untouched.
        for (int i = 0; i < s.M; i++)
            for (int j = s.N; j < ldc; j++)
                Assert.True(float.IsNaN(c0[i * ldc + j]) ? float.IsNaN(actual[i * ldc + j]) : c0[i * ldc + j] == actual[i * ldc + j],
                    $"{s}: padding C[{i},{j}] was written");
        for (int i = 0; i < s.M; i++)
            AssertClose(expected.AsSpan(i * ldc, s.N), actual.AsSpan(i * ldc, s.N), GemmAtol, GemmRtol, $"{s} row {i}");
    }

    static readonly float[] Alphas = [1f, -0.75f, 2f];
    static readonly float[] Betas = [0f, 1f, -0.5f];

    static GemmShape RandomGemm(PositiveInt m, PositiveInt n, PositiveInt k, bool ta, bool tb, NonNegativeInt pad, NonNegativeInt ab)
    {
        int M = 1 + m.Get % 40, N = 1 + n.Get % 50, K = 1 + k.Get % 60, p = pad.Get % 3;
        return new GemmShape(M, N, K, ta, tb,
            Lda: p == 0 ? 0 : (ta ? M : K) + p, Ldb: p == 0 ? 0 : (tb ? K : N) + p, Ldc: p == 0 ? 0 : N + p,
            Alpha: Alphas[ab.Get % 3], Beta: Betas[ab.Get / 3 % 3]);
    }

    [Property(MaxTest = 60)]
    public void GemmV2BlockedMatchesNaiveOnOddShapes(PositiveInt m, PositiveInt n, PositiveInt k, bool ta, bool tb,
        NonNegativeInt pad, NonNegativeInt ab, int seed)
        => CheckGemm(RandomGemm(m, n, k, ta, tb, pad, ab), seed, portable: false);

    [Property(MaxTest = 30)]
    public void GemmV2PortableKernelMatchesNaive(PositiveInt m, PositiveInt n, PositiveInt k, bool ta, bool tb,
        NonNegativeInt pad, NonNegativeInt ab, int seed)
        => CheckGemm(RandomGemm(m, n, k, ta, tb, pad, ab), seed, portable: true);

    /// <summary>Big enough for several K-blocks (K > 256), several MC blocks (M > 240), NC edges and the parallel path.</summary>
    [Theory]
    [InlineData(false, false, 1f, 0f)]
    [InlineData(true, false, 1f, 0.5f)]
    [InlineData(false, true, -1.5f, 0f)]
    [InlineData(true, true, 0.5f, 1f)]
    public void GemmV2BlockedMatchesNaiveAcrossBlocks(bool ta, bool tb, float alpha, float beta)
    {
        CheckGemm(new GemmShape(253, 71, 530, ta, tb, Alpha: alpha, Beta: beta), 7, portable: false);
        CheckGemm(new GemmShape(7, 3100, 300, ta, tb, Alpha: alpha, Beta: beta), 8, portable: false); // N > NC, thin M
        CheckGemm(new GemmShape(500, 5, 290, ta, tb, Alpha: alpha, Beta: beta), 9, portable: false);   // row-split path
        CheckGemm(new GemmShape(13, 70, 4500, ta, tb, Alpha: alpha, Beta: beta), 10, portable: false); // thin path, K > its chunk
        CheckGemm(new GemmShape(33, 40, 100, ta, tb, Alpha: alpha, Beta: beta), 11, portable: false);  // just past the thin limit
    }

    /// <summary>The thin path (M ≤ 32 rows times Bᵀ), both versions: M not a multiple of 4 (the single-row kernel), N not a
    /// multiple of 3 or of a task's block of 12 rows, K past several 1024-chunks with a partial last vector, padded strides.</summary>
    [Theory]
    [InlineData(1, 37, 2053, 0, 0f)]
    [InlineData(2, 5, 9, 3, 1f)]
    [InlineData(3, 1, 1030, 0, 0f)]
    [InlineData(5, 26, 3001, 2, -0.5f)]
    [InlineData(8, 4100, 200, 0, 0f)]
    [InlineData(32, 13, 2500, 1, 1f)]
    public void GemmThinRowsV1AndV2MatchNaive(int m, int n, int k, int pad, float beta)
    {
        var s = new GemmShape(m, n, k, TransB: true, Lda: pad == 0 ? 0 : k + pad, Ldb: pad == 0 ? 0 : k + 2 * pad, Ldc: pad == 0 ? 0 : n + pad,
            Alpha: pad == 2 ? -0.75f : 1f, Beta: beta);
        CheckGemm(s, 21, portable: false);
        CheckGemm(s, 22, portable: false, thinV1: true);
        CheckGemm(s with { TransA = true, Lda = pad == 0 ? 0 : m + pad }, 23, portable: false);
    }

    [Fact]
    public void GemmWithZeroDepthScalesC()
    {
        var c = new float[] { 1, 2, 3, 4 };
        Gemm.Host_V2Blocked(c, [], [], new GemmShape(2, 2, 0, Beta: 0.5f));
        Assert.Equal(new float[] { 0.5f, 1, 1.5f, 2 }, c);
    }

    /// <summary>A forward version against V1 on seeded inputs in [-1, 1]; every output must be written (y starts as NaN).</summary>
    static void CheckAgainstNaive(Conv2d.ForwardVersion version, ConvShape s, bool relu, int seed, float atol, float rtol)
    {
        var x = Random(seed, s.InputLength);
        var w = Random(seed + 1, s.WeightLength);
        var b = Random(seed + 2, s.K);
        var expected = new float[s.OutputLength];
        var actual = Enumerable.Repeat(float.NaN, (int)s.OutputLength).ToArray();
        Conv2d.ForwardHost_V1Naive(expected, x, w, b, s, relu);
        version(actual, x, w, b, s, relu);
        AssertClose(expected, actual, atol, rtol, s + (relu ? " +relu" : ""));
    }

    static void CheckConv(ConvShape s, bool relu, int seed) => CheckAgainstNaive(Conv2d.ForwardHost_V2Im2colGemm, s, relu, seed, GemmAtol, GemmRtol);

    static readonly int[] Kernels = [1, 3, 7, 2];

    [Property(MaxTest = 60)]
    public void ConvV2MatchesNaiveOnOddShapes(PositiveInt n, PositiveInt c, PositiveInt h, PositiveInt w, PositiveInt k,
        NonNegativeInt kernel, bool stride2, NonNegativeInt pad, bool relu, int seed)
    {
        int kr = Kernels[kernel.Get % Kernels.Length], stride = stride2 ? 2 : 1, p = pad.Get % 4;
        int H = 1 + h.Get % 13, W = 1 + w.Get % 19;
        var s = ConvShape.Square(1 + n.Get % 2, 1 + c.Get % 5, H, W, 1 + k.Get % 9, kr, stride, p);
        if (s.OutH <= 0 || s.OutW <= 0) return;
        CheckConv(s, relu, seed);
    }

    [Theory]
    [InlineData(2, 40, 30, 19, 13, 3, 1, 1)]  // C·R·S = 360 > one K-block, H ≠ W, rows cross panels
    [InlineData(1, 3, 64, 48, 70, 3, 1, 1)]   // conv1_1-like: batch 1, K > MR blocks, panels inside rows
    [InlineData(3, 24, 17, 23, 10, 1, 1, 0)]  // 1x1 stride 1: the direct (no im2col) path
    [InlineData(1, 5, 37, 41, 8, 7, 2, 3)]    // ResNet stem-like 7x7 stride 2
    [InlineData(2, 9, 15, 16, 6, 1, 2, 0)]    // 1x1 stride 2 goes through im2col
    public void ConvV2MatchesNaiveOnLayerLikeShapes(int n, int c, int h, int w, int k, int kernel, int stride, int pad)
    {
        CheckConv(ConvShape.Square(n, c, h, w, k, kernel, stride, pad), relu: true, 11);
        CheckConv(ConvShape.Square(n, c, h, w, k, kernel, stride, pad), relu: false, 12);
    }

    static void CheckConvV5(ConvShape s, bool relu, int seed) => CheckAgainstNaive(Conv2d.ForwardHost_V5BatchedGemm, s, relu, seed, GemmAtol, GemmRtol);

    /// <summary>Batch 1-3 (panels of 16 columns that span images), widths up to 40 so stride-2 rows take the
    /// 8-at-a-time de-interleave and its scalar tail, kernels 1, 2, 3, 7, K not a multiple of 6.</summary>
    [Property(MaxTest = 60)]
    public void ConvV5MatchesNaiveOnOddShapes(PositiveInt n, PositiveInt c, PositiveInt h, PositiveInt w, PositiveInt k,
        NonNegativeInt kernel, bool stride2, NonNegativeInt pad, bool relu, int seed)
    {
        int kr = Kernels[kernel.Get % Kernels.Length], stride = stride2 ? 2 : 1, p = pad.Get % 4;
        int H = 1 + h.Get % 13, W = 1 + w.Get % 40;
        var s = ConvShape.Square(1 + n.Get % 3, 1 + c.Get % 5, H, W, 1 + k.Get % 15, kr, stride, p);
        if (s.OutH <= 0 || s.OutW <= 0) return;
        CheckConvV5(s, relu, seed);
    }

    /// <summary>ResNet18's conv shapes at reduced channel counts (same maps, strides and padding), batch 1 and 3, and
    /// maps on both sides of <see cref="Conv2d.BatchedGemmMaxPixels"/> (one GEMM per image, or one over the batch).</summary>
    [Theory]
    [InlineData(1, 3, 224, 224, 16, 7, 2, 3)]  // stem: 112² outputs, one GEMM per image, stride-2 de-interleave
    [InlineData(3, 3, 61, 57, 10, 7, 2, 3)]    // odd stem-like map, batch 3
    [InlineData(1, 20, 56, 56, 13, 3, 1, 1)]   // layer1: 56², 3136 pixels per image
    [InlineData(3, 16, 56, 56, 24, 3, 2, 1)]   // layer2's strided 3x3: 28², the batch as one GEMM
    [InlineData(3, 16, 56, 56, 24, 1, 2, 0)]   // layer2's 1x1 stride-2 downsample
    [InlineData(1, 40, 14, 14, 70, 3, 2, 1)]   // layer4's strided 3x3 at batch 1: 49 pixels, rows split across cores
    [InlineData(3, 300, 7, 7, 150, 3, 1, 1)]   // layer4-like: C·9 > one k-block, K > MC, panels span images
    [InlineData(1, 260, 9, 11, 7, 1, 1, 0)]    // 1x1 stride 1, batch 1
    public void ConvV5MatchesNaiveOnResNetLikeShapes(int n, int c, int h, int w, int k, int kernel, int stride, int pad)
    {
        CheckConvV5(ConvShape.Square(n, c, h, w, k, kernel, stride, pad), relu: true, 71);
        CheckConvV5(ConvShape.Square(n, c, h, w, k, kernel, stride, pad), relu: false, 72);
    }

    static void CheckConvV6(ConvShape s, bool relu, int seed) => CheckAgainstNaive(Conv2d.ForwardHost_V6DirectSmallC, s, relu, seed, GemmAtol, GemmRtol);

    /// <summary>V6 direct (3x3 stride-1 pad-1, C ≤ 4): batch 1-3, K not a multiple of its 6-channel tile, rows not a
    /// multiple of its 16 pixels (the overlapping last block), heights from 1 (every tap row but one is padding).</summary>
    [Property(MaxTest = 60)]
    public void ConvV6DirectMatchesNaiveOnOddShapes(PositiveInt n, PositiveInt c, PositiveInt h, PositiveInt w, PositiveInt k, bool relu, int seed)
    {
        var s = ConvShape.Square(1 + n.Get % 3, 1 + c.Get % Conv2d.DirectSmallCMaxChannels, 1 + h.Get % 13, 16 + w.Get % 29, 1 + k.Get % 15, 3, 1, 1);
        CheckConvV6(s, relu, seed);
    }

    [Theory]
    [InlineData(1, 3, 224, 224, 64)]  // VGG16's conv1_1 at batch 1
    [InlineData(2, 3, 37, 61, 70)]    // K past 66 (12 channel tiles), odd map
    [InlineData(3, 1, 16, 16, 5)]     // grey, one block per row
    public void ConvV6DirectMatchesNaiveOnStemShapes(int n, int c, int h, int w, int k)
    {
        CheckConvV6(ConvShape.Square(n, c, h, w, k, 3, 1, 1), relu: true, 91);
        CheckConvV6(ConvShape.Square(n, c, h, w, k, 3, 1, 1), relu: false, 92);
    }

    [Fact]
    public void ConvV6DirectRejectsOtherShapes()
    {
        foreach (var s in new[] { ConvShape.Square(1, 3, 20, 20, 4, 3, 2, 1), ConvShape.Square(1, 5, 20, 20, 4, 3, 1, 1), ConvShape.Square(1, 3, 20, 15, 4, 3, 1, 1) })
        {
            var ex = Assert.Throws<ArgumentException>(() => Conv2d.ForwardHost_V6DirectSmallC(
                new float[s.OutputLength], new float[s.InputLength], new float[s.WeightLength], new float[s.K], s, false));
            Assert.Contains("V6DirectSmallC", ex.Message);
        }
    }

    /// <summary>The bias is added and ReLU applied in the GEMM's epilogue: with zero filters y is exactly relu(bias)
    /// (or bias), both when each image is its own GEMM and when the batch is one.</summary>
    [Theory]
    [InlineData(2, 40, 40)]  // 1600 pixels per image: per-image GEMMs
    [InlineData(3, 9, 13)]   // the batch as one GEMM, copied back per image
    public void ConvV5AppliesBiasAndRelu(int n, int h, int w)
    {
        var s = ConvShape.Square(n, 5, h, w, 11, 3, 1, 1);
        var x = Random(81, s.InputLength);
        var wt = new float[s.WeightLength];
        var b = Random(82, s.K);
        long plane = (long)s.OutH * s.OutW;
        foreach (bool relu in new[] { false, true })
        {
            var y = Enumerable.Repeat(float.NaN, (int)s.OutputLength).ToArray();
            Conv2d.ForwardHost_V5BatchedGemm(y, x, wt, b, s, relu);
            for (long i = 0; i < y.Length; i++)
            {
                float bk = b[i / plane % s.K], expected = relu && bk < 0 ? 0f : bk;
                Assert.True(y[i] == expected, $"{s} relu={relu}: y[{i}] = {y[i]:R}, expected {expected:R}");
            }
        }
        Assert.Contains(b, v => v < 0);
    }

    // Winograd F(2x2, 3x3): the input transform adds up to 4 patch elements, the output transform 9 products
    // per position, so each output carries a few times the rounding of direct summation; with inputs in
    // [-1, 1] and C·9 ≤ ~3000 terms the worst case stays near 1e-5. The same 1e-4 as the GEMM (and as the
    // per-tap tolerance against PyTorch) still catches a wrong transform entry, which moves outputs by ~0.1.
    const float WinogradAtol = 1e-4f, WinogradRtol = 1e-4f;

    static void CheckWinograd(ConvShape s, bool relu, int seed) => CheckAgainstNaive(Conv2d.ForwardHost_V3Winograd, s, relu, seed, WinogradAtol, WinogradRtol);

    /// <summary>Odd and even H, W (edge tiles, rows of tiles not a multiple of 8), batch 1-3 (tile groups that
    /// span images), C and K not multiples of the 6x16 blocks.</summary>
    [Property(MaxTest = 60)]
    public void ConvV3WinogradMatchesNaiveOnOddShapes(PositiveInt n, PositiveInt c, PositiveInt h, PositiveInt w,
        PositiveInt k, bool relu, int seed)
    {
        var s = ConvShape.Square(1 + n.Get % 3, 1 + c.Get % 70, 1 + h.Get % 23, 1 + w.Get % 41, 1 + k.Get % 20, 3, 1, 1);
        CheckWinograd(s, relu, seed);
    }

    [Theory]
    [InlineData(1, 64, 37, 45, 70)]   // interior 8-tile groups (W ≥ 18) plus every edge case, K > 64
    [InlineData(2, 300, 9, 35, 13)]   // C > 256: two k-blocks accumulate in M
    [InlineData(1, 5, 20, 52, 150)]   // K > MC = 144 rows of the GEMM
    [InlineData(9, 16, 7, 7, 8)]      // 16 tiles per image: chunks and 8-tile groups cross image boundaries
    public void ConvV3WinogradMatchesNaiveOnLayerLikeShapes(int n, int c, int h, int w, int k)
    {
        CheckWinograd(ConvShape.Square(n, c, h, w, k, 3, 1, 1), relu: true, 21);
        CheckWinograd(ConvShape.Square(n, c, h, w, k, 3, 1, 1), relu: false, 22);
    }

    [Fact]
    public void ConvV3WinogradRejectsOtherShapes()
    {
        var s = ConvShape.Square(1, 2, 8, 8, 3, 3, 2, 1);
        var ex = Assert.Throws<ArgumentException>(() => Conv2d.ForwardHost_V3Winograd(
            new float[s.OutputLength], new float[s.InputLength], new float[s.WeightLength], new float[s.K], s, false));
        Assert.Contains("3x3 stride-1 pad-1", ex.Message);
    }

    // Winograd F(4x4, 3x3): the input transform sums up to 16 terms with weights up to 25 (Bᵀ's 5·5), the filter
    // transform has entries down to 1/24 and the output transform weights up to 64 (Aᵀ's 8·8), so each output
    // carries about ten times V3's rounding. With inputs in [-1, 1] and C ≤ 300 the worst case measured stays
    // below 1e-4; 3e-4 leaves headroom and is still ~300 times below what a wrong transform entry moves (~0.1).
    const float Winograd4x4Atol = 1e-3f, Winograd4x4Rtol = 1e-4f;

    static float[] CheckWinograd4x4(ConvShape s, bool relu, int seed)
    {
        var x = Random(seed, s.InputLength);
        var w = Random(seed + 1, s.WeightLength);
        var b = Random(seed + 2, s.K);
        var expected = new float[s.OutputLength];
        var actual = Enumerable.Repeat(float.NaN, (int)s.OutputLength).ToArray(); // every output must be written
        Conv2d.ForwardHost_V1Naive(expected, x, w, b, s, relu);
        Conv2d.ForwardHost_V4Winograd4x4(actual, x, w, b, s, relu);
        AssertClose(expected, actual, Winograd4x4Atol, Winograd4x4Rtol, s + (relu ? " +relu" : ""));
        return actual;
    }

    /// <summary>H, W of every residue mod 4 (dropped past-edge outputs), rows of tiles not a multiple of 8 (groups
    /// that cross tile rows and images), batch 1-3, C and K not multiples of the 6x16 blocks.</summary>
    [Property(MaxTest = 60)]
    public void ConvV4Winograd4x4MatchesNaiveOnOddShapes(PositiveInt n, PositiveInt c, PositiveInt h, PositiveInt w,
        PositiveInt k, bool relu, int seed)
    {
        var s = ConvShape.Square(1 + n.Get % 3, 1 + c.Get % 70, 1 + h.Get % 23, 1 + w.Get % 77, 1 + k.Get % 20, 3, 1, 1);
        CheckWinograd4x4(s, relu, seed);
    }

    [Theory]
    [InlineData(1, 64, 37, 75, 70)]   // interior 8-tile groups (W ≥ 36), left and right edge groups, H and W ≡ 1 mod 4
    [InlineData(2, 300, 9, 35, 13)]   // C > 256: two k-blocks accumulate in M
    [InlineData(1, 5, 22, 66, 150)]   // K > MC = 144 rows of the GEMM, H and W ≡ 2 mod 4
    [InlineData(3, 65, 28, 28, 67)]   // VGG conv4-like: 7 tiles per row, every group crosses a tile row; C, K odd ≥ 64
    [InlineData(2, 67, 14, 14, 65)]   // conv5-like: 4 tiles per row, half of each edge tile dropped
    [InlineData(1, 3, 67, 131, 64)]   // conv1_1-like C = 3, W ≡ 3 mod 4 with interior groups
    [InlineData(3, 64, 50, 50, 21)]   // small filters over 507 tiles: 32-tile chunks (not the whole batch), chunks crossing images
    public void ConvV4Winograd4x4MatchesNaiveOnLayerLikeShapes(int n, int c, int h, int w, int k)
    {
        CheckWinograd4x4(ConvShape.Square(n, c, h, w, k, 3, 1, 1), relu: true, 41);
        CheckWinograd4x4(ConvShape.Square(n, c, h, w, k, 3, 1, 1), relu: false, 42);
    }

    /// <summary>The bias is added and ReLU applied in the output transform: with zero filters y is exactly
    /// relu(bias) (or bias), on interior and edge tiles alike.</summary>
    [Fact]
    public void ConvV4Winograd4x4AppliesBiasAndRelu()
    {
        var s = ConvShape.Square(2, 7, 13, 43, 9, 3, 1, 1);
        var x = Random(51, s.InputLength);
        var w = new float[s.WeightLength];
        var b = Random(52, s.K);
        long plane = (long)s.OutH * s.OutW;
        foreach (bool relu in new[] { false, true })
        {
            var y = Enumerable.Repeat(float.NaN, (int)s.OutputLength).ToArray();
            Conv2d.ForwardHost_V4Winograd4x4(y, x, w, b, s, relu);
            for (long i = 0; i < y.Length; i++)
            {
                float bk = b[i / plane % s.K], expected = relu && bk < 0 ? 0f : bk;
                Assert.True(y[i] == expected, $"{s} relu={relu}: y[{i}] = {y[i]:R}, expected {expected:R}");
            }
        }
        Assert.Contains(b, v => v < 0); // ReLU must have had something to clip
    }

    /// <summary>Same inputs, same bits: chunks are fixed by the shape, not by timing (training's --resume relies on it).</summary>
    [Fact]
    public void ConvV4Winograd4x4IsDeterministic()
    {
        var s = ConvShape.Square(4, 96, 30, 46, 80, 3, 1, 1);
        var first = CheckWinograd4x4(s, relu: false, 61);
        for (int run = 0; run < 3; run++)
            Assert.Equal(first, CheckWinograd4x4(s, relu: false, 61));
    }

    /// <summary>The dispatch rule: F(4x4) where its tiles need fewer multiplies, F(2x2) for outputs 2 (or 1) wide or tall.</summary>
    [Theory]
    [InlineData(224, 224, true)]
    [InlineData(14, 14, true)]
    [InlineData(7, 7, true)]
    [InlineData(4, 4, true)]
    [InlineData(6, 6, false)]  // 4 tiles of 36 = 9 of 16: a tie stays on F(2x2)
    [InlineData(2, 2, false)]
    [InlineData(2, 40, false)]
    [InlineData(1, 1, false)]
    public void ConvForwardHostPrefersWinograd4x4WhereItMultipliesLess(int h, int w, bool expected)
        => Assert.Equal(expected, Conv2d.Winograd4x4FewerMultiplies(ConvShape.Square(1, 64, h, w, 64, 3, 1, 1)));

    [Fact]
    public void ConvV4Winograd4x4RejectsOtherShapes()
    {
        var s = ConvShape.Square(1, 2, 8, 8, 3, 3, 1, 0);
        var ex = Assert.Throws<ArgumentException>(() => Conv2d.ForwardHost_V4Winograd4x4(
            new float[s.OutputLength], new float[s.InputLength], new float[s.WeightLength], new float[s.K], s, false));
        Assert.Contains("3x3 stride-1 pad-1", ex.Message);
    }

    /// <summary>The dispatcher on shapes it sends to F(4x4) Winograd, to F(2x2) Winograd (2-row outputs) and to V5
    /// (C = 3, strided, too few tiles) gives V1's answer (to F(4x4)'s tolerance, the loosest of them).</summary>
    [Theory]
    [InlineData(9, 64, 19, 21, 24, 3, 1, 1)]   // 270 4x4 tiles: F(4x4)
    [InlineData(2, 64, 19, 21, 24, 3, 1, 1)]   // 60 tiles: F(4x4)
    [InlineData(1, 64, 19, 21, 24, 3, 1, 1)]   // 30 tiles: V5
    [InlineData(88, 64, 2, 9, 24, 3, 1, 1)]    // 264 tiles, 2 tall: F(2x2)
    [InlineData(3, 64, 2, 9, 24, 3, 1, 1)]
    [InlineData(1, 3, 19, 21, 24, 3, 1, 1)]    // C = 3, 3x3 stride 1, outputs 21 wide: V6 direct
    [InlineData(1, 3, 19, 15, 24, 3, 1, 1)]    // the same 15 wide: V5
    [InlineData(1, 64, 19, 21, 24, 3, 2, 1)]
    [InlineData(1, 3, 37, 37, 8, 7, 2, 3)]     // stem-like
    public void ConvForwardHostDispatchMatchesNaive(int n, int c, int h, int w, int k, int kernel, int stride, int pad)
    {
        var s = ConvShape.Square(n, c, h, w, k, kernel, stride, pad);
        var x = Random(31, s.InputLength); var wt = Random(32, s.WeightLength); var b = Random(33, s.K);
        var expected = new float[s.OutputLength];
        var actual = new float[s.OutputLength];
        Conv2d.ForwardHost_V1Naive(expected, x, wt, b, s, true);
        Conv2d.ForwardHost(actual, x, wt, b, s, true);
        AssertClose(expected, actual, Winograd4x4Atol, Winograd4x4Rtol, s);
    }

    [Property(MaxTest = 40)]
    public void MaxPoolFastMatchesNaive(PositiveInt n, PositiveInt c, PositiveInt h, PositiveInt w, NonNegativeInt kind, int seed)
    {
        // The hot 2x2/2 case plus general windows with padding and overlap.
        (int k, int st, int p) = (kind.Get % 4) switch { 0 => (2, 2, 0), 1 => (3, 2, 1), 2 => (3, 1, 0), _ => (2, 2, 1) };
        // Widths up to 41 so the 8-outputs-at-a-time path and its scalar tail both run.
        var s = new PoolShape(1 + n.Get % 2, 1 + c.Get % 4, k + h.Get % 15, k + w.Get % 40, k, k, st, st, p, p);
        var x = Random(seed, s.InputLength);
        var rng = new Random(seed);
        for (int i = 0; i < 3; i++) x[rng.Next(x.Length)] = float.NaN; // a NaN must win its window, as in the specification
        var expected = new float[s.OutputLength];
        var actual = new float[s.OutputLength];
        Pooling.MaxForwardHost_V1Naive(expected, x, s);
        Pooling.MaxForwardHost(actual, x, s);
        AssertClose(expected, actual, 0f, 0f, s);
    }

    [Property(MaxTest = 30)]
    public void ReluFastMatchesNaive(PositiveInt len, int seed)
    {
        var x = Random(seed, 1 + len.Get % 100);
        x[0] = float.NaN;
        var expected = new float[x.Length];
        var actual = new float[x.Length];
        Activations.ReluHost_V1Naive(expected, x);
        Activations.ReluHost(actual, x);
        AssertClose(expected, actual, 0f, 0f, $"relu length {x.Length}");
        Activations.ReluHost(x, x); // in place
        AssertClose(expected, x, 0f, 0f, $"relu in place length {x.Length}");
    }

    [Theory]
    [InlineData(1, 50, 20, true)]
    [InlineData(3, 300, 37, false)]
    [InlineData(8, 513, 70, true)]
    public void LinearMatchesGemmPlusBias(int n, int inFeatures, int outFeatures, bool relu)
    {
        var x = Random(1, (long)n * inFeatures);
        var w = Random(2, (long)outFeatures * inFeatures);
        var b = Random(3, outFeatures);
        var expected = new float[n * outFeatures];
        Gemm.Host_V1Naive(expected, x, w, new GemmShape(n, outFeatures, inFeatures, TransB: true));
        for (int i = 0; i < n; i++)
            for (int o = 0; o < outFeatures; o++)
            {
                float v = expected[i * outFeatures + o] + b[o];
                expected[i * outFeatures + o] = relu && v < 0f ? 0f : v;
            }
        var actual = new float[n * outFeatures];
        Linear.ForwardHost(actual, x, w, b, n, inFeatures, outFeatures, relu);
        AssertClose(expected, actual, GemmAtol, GemmRtol, (n, inFeatures, outFeatures, relu));
    }
}
