using Tp7.Engine.Kernels;

namespace Tp7.Tests;

/// <summary>
/// Host backward ops against central finite differences of a forward written in double in this file, on tiny
/// shapes: L(x) = Σ g ⊙ f(x) for a random g, so ∂L/∂x is the backward of f applied to dy = g. Inputs stay away
/// from ReLU's kink (|x| ≥ 0.2) and from max-pool ties (distinct values 0.01 apart, step 1e-4). A gradient
/// passes when every element is within 1e-3·max|numeric| of the numeric one. Also: PyTorch's max-pool tie rule,
/// and the rule that parameter gradients accumulate while activation gradients overwrite.
/// </summary>
public class BackwardOpsTests
{
    const double FdStep = 1e-4, FdRtol = 1e-3;

    static float[] Random(int seed, long n, float scale = 1f)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (long i = 0; i < n; i++) v[i] = scale * (2f * rng.NextSingle() - 1f);
        return v;
    }

    static double[] D(float[] a) => Array.ConvertAll(a, v => (double)v);

    /// <summary>Central differences of <paramref name="loss"/> with respect to every element of <paramref name="x"/>.</summary>
    static double[] Numeric(Func<double[], double> loss, float[] x)
    {
        var xd = D(x);
        var grad = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double keep = xd[i];
            xd[i] = keep + FdStep; double up = loss(xd);
            xd[i] = keep - FdStep; double down = loss(xd);
            xd[i] = keep;
            grad[i] = (up - down) / (2 * FdStep);
        }
        return grad;
    }

    /// <summary>Fails with the worst element, both values and the case when |analytic - numeric| > 1e-3·max|numeric|.</summary>
    internal static void AssertGradient(double[] numeric, ReadOnlySpan<float> analytic, string what)
    {
        Assert.Equal(numeric.Length, analytic.Length);
        double scale = Math.Max(numeric.Max(Math.Abs), 1e-12), tol = FdRtol * scale;
        int worst = 0;
        double worstErr = -1;
        for (int i = 0; i < numeric.Length; i++)
        {
            double err = Math.Abs(numeric[i] - analytic[i]);
            if (err > worstErr) { worstErr = err; worst = i; }
        }
        Assert.True(worstErr <= tol,
            $"{what}: element [{worst}] numeric {numeric[worst]:R}, analytic {analytic[worst]:R} (|Δ| {worstErr:G3} > {tol:G3} = 1e-3·max|grad|)");
        Assert.True(scale > 1e-6, $"{what}: the gradient is all zero, the test checks nothing");
    }

    static double Dot(double[] g, double[] y)
    {
        double s = 0;
        for (int i = 0; i < g.Length; i++) s += g[i] * y[i];
        return s;
    }

    static float[] Nan(long n) => Enumerable.Repeat(float.NaN, (int)n).ToArray();

    // ----- linear -----

    static double[] LinearForward(double[] x, double[] w, double[] b, int n, int inF, int outF)
    {
        var y = new double[n * outF];
        for (int i = 0; i < n; i++)
            for (int o = 0; o < outF; o++)
            {
                double s = b[o];
                for (int k = 0; k < inF; k++) s += x[i * inF + k] * w[o * inF + k];
                y[i * outF + o] = s;
            }
        return y;
    }

    [Theory]
    [InlineData(1, 3, 4)]
    [InlineData(3, 5, 2)]
    [InlineData(4, 7, 9)]
    public void LinearGradientsMatchFiniteDifferences(int n, int inF, int outF)
    {
        var x = Random(1, n * inF);
        var w = Random(2, outF * inF);
        var b = Random(3, outF);
        var g = Random(4, n * outF);
        var gd = D(g);

        var dx = Nan(x.Length);
        Linear.BackwardDataHost(dx, g, w, n, inF, outF);
        var dw = new float[w.Length];
        var db = new float[b.Length];
        Linear.BackwardWeightHost(dw, db, g, x, n, inF, outF);

        AssertGradient(Numeric(xd => Dot(gd, LinearForward(xd, D(w), D(b), n, inF, outF)), x), dx, $"linear dx {(n, inF, outF)}");
        AssertGradient(Numeric(wd => Dot(gd, LinearForward(D(x), wd, D(b), n, inF, outF)), w), dw, $"linear dW {(n, inF, outF)}");
        AssertGradient(Numeric(bd => Dot(gd, LinearForward(D(x), D(w), bd, n, inF, outF)), b), db, $"linear db {(n, inF, outF)}");
    }

    /// <summary>A shape big enough for the parallel GEMM paths (over 4 MFLOP) against a double reference.</summary>
    [Fact]
    public void LinearBackwardOnParallelPathMatchesDoubleReference()
    {
        const int n = 8, inF = 1999, outF = 301;
        var x = Random(5, n * inF);
        var w = Random(6, outF * inF);
        var g = Random(7, n * outF);
        var dx = Nan(x.Length);
        Linear.BackwardDataHost(dx, g, w, n, inF, outF);
        var dw = new float[w.Length];
        var db = new float[outF];
        Linear.BackwardWeightHost(dw, db, g, x, n, inF, outF);
        var refDx = new float[x.Length];
        for (int i = 0; i < n; i++)
            for (int k = 0; k < inF; k++)
            {
                double s = 0;
                for (int o = 0; o < outF; o++) s += (double)g[i * outF + o] * w[o * inF + k];
                refDx[i * inF + k] = (float)s;
            }
        var refDw = new float[w.Length];
        var refDb = new float[outF];
        for (int o = 0; o < outF; o++)
        {
            double sb = 0;
            for (int i = 0; i < n; i++) sb += g[i * outF + o];
            refDb[o] = (float)sb;
            for (int k = 0; k < inF; k++)
            {
                double s = 0;
                for (int i = 0; i < n; i++) s += (double)g[i * outF + o] * x[i * inF + k];
                refDw[o * inF + k] = (float)s;
            }
        }
        HostOpsTests.AssertClose(refDx, dx, 1e-4f, 1e-4f, "linear dx (8, 1999, 301)");
        HostOpsTests.AssertClose(refDw, dw, 1e-5f, 1e-5f, "linear dW (8, 1999, 301)");
        HostOpsTests.AssertClose(refDb, db, 1e-5f, 1e-5f, "linear db (8, 1999, 301)");
    }

    [Fact]
    public void LinearBackwardWeightAccumulatesAndBackwardDataOverwrites()
    {
        const int n = 3, inF = 5, outF = 4;
        var x = Random(8, n * inF);
        var w = Random(9, outF * inF);
        var g = Random(10, n * outF);
        var dw1 = new float[w.Length];
        var db1 = new float[outF];
        Linear.BackwardWeightHost(dw1, db1, g, x, n, inF, outF);
        var dw2 = (float[])dw1.Clone();
        var db2 = (float[])db1.Clone();
        Linear.BackwardWeightHost(dw2, db2, g, x, n, inF, outF);
        HostOpsTests.AssertClose(dw1.Select(v => 2 * v).ToArray(), dw2, 1e-6f, 1e-6f, "dW after two backward-weights");
        HostOpsTests.AssertClose(db1.Select(v => 2 * v).ToArray(), db2, 1e-6f, 1e-6f, "db after two backward-weights");
        Assert.Contains(dw1, v => Math.Abs(v) > 0.05f);

        // A layer without bias: db empty, dW still accumulates onto what was there.
        var dw3 = Enumerable.Repeat(1f, w.Length).ToArray();
        Linear.BackwardWeightHost(dw3, Span<float>.Empty, g, x, n, inF, outF);
        HostOpsTests.AssertClose(dw1.Select(v => 1 + v).ToArray(), dw3, 1e-6f, 1e-6f, "dW = 1 + dy^T x without bias");

        // dx starts as garbage (NaN, then something else): the result does not depend on it.
        var dxA = Nan(n * inF);
        var dxB = Enumerable.Repeat(123f, n * inF).ToArray();
        Linear.BackwardDataHost(dxA, g, w, n, inF, outF);
        Linear.BackwardDataHost(dxB, g, w, n, inF, outF);
        Assert.Equal(dxA, dxB);
        Assert.DoesNotContain(dxA, float.IsNaN);
    }

    [Fact]
    public void LinearBackwardRejectsWrongLengthsNamingTheTensor()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            Linear.BackwardWeightHost(new float[11], new float[4], new float[12], new float[15], 3, 5, 4));
        Assert.StartsWith("dw: buffer has 11 elements, expected 20", e.Message);
        e = Assert.Throws<ArgumentException>(() =>
            Linear.BackwardWeightHost(new float[20], new float[3], new float[12], new float[15], 3, 5, 4));
        Assert.StartsWith("db: buffer has 3 elements, expected 4", e.Message);
        e = Assert.Throws<ArgumentException>(() => Linear.BackwardDataHost(new float[15], new float[13], new float[20], 3, 5, 4));
        Assert.StartsWith("dy: buffer has 13 elements, expected 12", e.Message);
    }

    // ----- ReLU -----

    [Fact]
    public void ReluGradientMatchesFiniteDifferences()
    {
        var rng = new Random(11);
        var x = Enumerable.Range(0, 40).Select(_ => (rng.Next(2) == 0 ? -1f : 1f) * (0.2f + rng.NextSingle())).ToArray();
        var g = Random(12, x.Length);
        var y = new float[x.Length];
        Activations.ReluHost(y, x);
        var dx = Nan(x.Length);
        Activations.ReluBackwardHost(dx, g, y);
        AssertGradient(Numeric(xd => Dot(D(g), xd.Select(v => Math.Max(v, 0)).ToArray()), x), dx, "relu dx");
    }

    [Fact]
    public void ReluBackwardSimdMatchesNaiveInPlaceAndPassesNaN()
    {
        const int n = 200_003; // several parallel chunks and a scalar tail
        var y = Random(13, n);
        y[0] = 0f; y[1] = -0f; y[2] = float.NaN; y[3] = float.Epsilon; y[n - 1] = float.NaN;
        for (int i = 0; i < n; i += 7) y[i + 4 < n ? i + 4 : i] = 0f;
        var dy = Random(14, n);
        var v1 = Nan(n);
        Activations.ReluBackwardHost_V1Naive(v1, dy, y);
        var inPlace = (float[])dy.Clone();
        Activations.ReluBackwardHost(inPlace, inPlace, y);
        Assert.Equal(v1, inPlace);
        Assert.Equal(0f, v1[0]); Assert.Equal(0f, v1[1]);
        Assert.Equal(dy[2], v1[2]); Assert.Equal(dy[3], v1[3]);
        for (int i = 0; i < n; i++)
            Assert.True(y[i] > 0 || float.IsNaN(y[i]) ? v1[i] == dy[i] : v1[i] == 0f, $"[{i}] y {y[i]} dy {dy[i]} dx {v1[i]}");
    }

    // ----- pooling -----

    static double[] MaxPoolForward(double[] x, PoolShape s)
    {
        int oh = s.OutH, ow = s.OutW;
        var y = new double[s.OutputLength];
        for (int p = 0; p < s.N * s.C; p++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    double m = double.NegativeInfinity;
                    for (int r = 0; r < s.KernelH; r++)
                        for (int q = 0; q < s.KernelW; q++)
                        {
                            int iy = oy * s.StrideH - s.PadH + r, ix = ox * s.StrideW - s.PadW + q;
                            if (iy >= 0 && iy < s.H && ix >= 0 && ix < s.W) m = Math.Max(m, x[(p * s.H + iy) * s.W + ix]);
                        }
                    y[(p * oh + oy) * ow + ox] = m;
                }
        return y;
    }

    /// <summary>A shuffled permutation scaled by 0.01: no ties, and a 1e-4 step never changes an argmax.</summary>
    static float[] Distinct(int seed, long n)
    {
        var v = Enumerable.Range(0, (int)n).Select(i => (float)(0.01 * (i - n / 2))).ToArray();
        new Random(seed).Shuffle(v);
        return v;
    }

    public static TheoryData<PoolShape> MaxShapes => new()
    {
        new PoolShape(2, 2, 7, 6, 3, 3, 2, 2, 1, 1),   // overlapping windows, padding 1
        new PoolShape(1, 1, 5, 5, 2, 2, 1, 1),         // overlapping, no padding
        new PoolShape(1, 2, 6, 4, 2, 2, 2, 2),         // VGG's pool
        new PoolShape(1, 1, 5, 7, 3, 2, 1, 2, 1, 1),   // H != W, kernel 3x2, stride 1x2
    };

    [Theory]
    [MemberData(nameof(MaxShapes))]
    public void MaxPoolGradientMatchesFiniteDifferences(PoolShape s)
    {
        var x = Distinct(15, s.InputLength);
        var g = Random(16, s.OutputLength);
        var dx = Nan(s.InputLength);
        Pooling.MaxBackwardHost(dx, g, x, s);
        AssertGradient(Numeric(xd => Dot(D(g), MaxPoolForward(xd, s)), x), dx, $"max pool dx {s}");
    }

    [Fact]
    public void MaxBackward_TiesGoToTheFirstMaxOfARowMajorScan_AsPyTorchCpu()
    {
        // One plane 2 x 6, three 2x2 stride-2 windows:
        //   window 0 all equal          -> its first element (0, 0)
        //   window 1 [0 5 / 5 3]        -> the first 5, (0, 3)
        //   window 2 [-inf -inf/-inf -inf] -> the first element (0, 4)
        var s = new PoolShape(1, 1, 2, 6, 2, 2, 2, 2);
        float ni = float.NegativeInfinity;
        var x = new[] { 1f, 1f, 0f, 5f, ni, ni,
                        1f, 1f, 5f, 3f, ni, ni };
        var dy = new[] { 10f, 20f, 30f };
        var dx = Nan(x.Length);
        Pooling.MaxBackwardHost(dx, dy, x, s);
        Assert.Equal(new[] { 10f, 0f, 0f, 20f, 30f, 0f,
                             0f, 0f, 0f, 0f, 0f, 0f }, dx);

        // A NaN always replaces the running max, so the last NaN of a window wins (val > max || isnan(val)).
        var xn = new[] { float.NaN, 2f, 0f, 0f, 0f, 0f,
                         7f, float.NaN, 0f, 0f, 0f, 0f };
        Pooling.MaxBackwardHost(dx, dy, xn, s);
        Assert.Equal(new[] { 0f, 0f, 20f, 0f, 30f, 0f,
                             0f, 10f, 0f, 0f, 0f, 0f }, dx);

        // Overlapping windows of equal values (3x3 stride 1 on a constant 3x4 plane): each window's first element.
        var so = new PoolShape(1, 1, 3, 4, 3, 3, 1, 1);
        var dxo = Nan(12);
        Pooling.MaxBackwardHost(dxo, new[] { 1f, 2f }, Enumerable.Repeat(4f, 12).ToArray(), so);
        Assert.Equal(new[] { 1f, 2f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f }, dxo);
    }

    [Fact]
    public void MaxBackwardParallelPlanesMatchOnePlaneAtATime()
    {
        // 1 x 40 x 45 x 41 = 73 800 inputs takes the parallel path; each plane on its own takes the serial one.
        var s = new PoolShape(1, 40, 45, 41, 3, 3, 2, 2, 1, 1);
        var x = Random(17, s.InputLength).Select(v => MathF.Round(v * 3)).ToArray(); // many ties
        var dy = Random(18, s.OutputLength);
        var dx = Nan(s.InputLength);
        Pooling.MaxBackwardHost(dx, dy, x, s);
        var one = s with { C = 1 };
        int hw = s.H * s.W, ohw = s.OutH * s.OutW;
        for (int c = 0; c < s.C; c++)
        {
            var dxc = new float[hw];
            Pooling.MaxBackwardHost(dxc, dy.AsSpan(c * ohw, ohw), x.AsSpan(c * hw, hw), one);
            Assert.Equal(dxc, dx.AsSpan(c * hw, hw).ToArray());
        }
        // Every dy lands somewhere: the sums agree.
        Assert.Equal(dy.Sum(v => (double)v), dx.Sum(v => (double)v), 3);
    }

    public static TheoryData<PoolShape> Vgg2x2Shapes => new()
    {
        new PoolShape(2, 3, 9, 35, 2, 2, 2, 2),     // H and W odd; 17 windows a row: blocks of 8 at 0, 8 and 9 (overlapping)
        new PoolShape(1, 1, 2, 2, 2, 2, 2, 2),      // one window: scalar
        new PoolShape(2, 2, 7, 6, 2, 2, 2, 2),      // H odd, 3 windows a row: scalar
        new PoolShape(1, 3, 8, 9, 2, 2, 2, 2),      // 4 windows a row: one block of 4 (twice, same place)
        new PoolShape(1, 2, 4, 18, 2, 2, 2, 2),     // 9 windows a row: blocks of 8 at 0 and 1
        new PoolShape(3, 2, 16, 33, 2, 2, 2, 2),    // W odd, 16 windows a row: blocks of 8 only
        new PoolShape(1, 40, 45, 41, 2, 2, 2, 2),   // 73 800 inputs: planes in parallel
        new PoolShape(2, 64, 14, 14, 2, 2, 2, 2),   // VGG's pool5 planes: blocks of 4 at 0 and 3, several planes per task
    };

    /// <summary>
    /// V2's 2x2 stride-2 path against V1 bit for bit (sign of zero and NaN payload included) on quantised inputs
    /// (ties), NaNs, -inf windows and dy with -0, NaN and ±inf; dx starts as NaN so every element must be written.
    /// </summary>
    [Theory]
    [MemberData(nameof(Vgg2x2Shapes))]
    public void MaxBackwardV2MatchesV1BitForBitWithTiesAndNaNs(PoolShape s)
    {
        var rng = new Random(21);
        var x = Random(22, s.InputLength).Select(v => MathF.Round(v * 2)).ToArray(); // five levels: many ties
        for (int i = 0; i < x.Length; i++)
        {
            int r = rng.Next(40);
            if (r == 0) x[i] = float.NaN;
            else if (r == 1) x[i] = float.NegativeInfinity;
            else if (r == 2) x[i] = -0f;
        }
        // A whole window of -inf and a window of two NaNs with different payloads (the last wins).
        x[0] = x[1] = x[s.W] = x[s.W + 1] = float.NegativeInfinity;
        if (s.W >= 4) { x[2] = BitConverter.Int32BitsToSingle(0x7FC00001); x[s.W + 3] = BitConverter.Int32BitsToSingle(0x7FC00002); }
        var dy = Random(23, s.OutputLength);
        for (int i = 0; i < dy.Length; i += 5) dy[i] = -0f;
        for (int i = 1; i < dy.Length; i += 11) dy[i] = BitConverter.Int32BitsToSingle(unchecked((int)0xFFC00003));
        for (int i = 2; i < dy.Length; i += 13) dy[i] = i % 2 == 0 ? float.PositiveInfinity : float.NegativeInfinity;
        var v1 = Nan(s.InputLength);
        var v2 = Nan(s.InputLength);
        Pooling.MaxBackwardHost_V1Naive(v1, dy, x, s);
        Pooling.MaxBackwardHost_V2Planes(v2, dy, x, s);
        for (int i = 0; i < v1.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(v1[i]) == BitConverter.SingleToInt32Bits(v2[i]),
                $"{s}: dx[{i}] V1 {v1[i]} (0x{BitConverter.SingleToInt32Bits(v1[i]):X8}) V2 {v2[i]} (0x{BitConverter.SingleToInt32Bits(v2[i]):X8})");
        // The row and column no window covers get 0.
        int hw = s.H * s.W;
        for (long p = 0; p < (long)s.N * s.C; p++)
        {
            if (s.H % 2 == 1) for (int ix = 0; ix < s.W; ix++) Assert.Equal(0, BitConverter.SingleToInt32Bits(v2[p * hw + (s.H - 1) * s.W + ix]));
            if (s.W % 2 == 1) for (int iy = 0; iy < s.H; iy++) Assert.Equal(0, BitConverter.SingleToInt32Bits(v2[p * hw + iy * s.W + s.W - 1]));
        }
        // Each window routes its dy to exactly one of its four positions (a finite nonzero dy appears once).
        for (int oy = 0; oy < s.OutH; oy++)
            for (int ox = 0; ox < s.OutW; ox++)
            {
                float g = dy[oy * s.OutW + ox];
                if (!float.IsFinite(g) || g == 0f) continue;
                int hits = 0;
                foreach (var (r, q) in new[] { (0, 0), (0, 1), (1, 0), (1, 1) })
                    if (v2[(2 * oy + r) * s.W + 2 * ox + q] == g) hits++;
                Assert.Equal(1, hits);
            }
    }

    [Fact]
    public void MaxBackwardV2RoutesTiesAndNaNsAsPyTorchInEverySimdLane()
    {
        // One plane 2 x 32 (16 windows: two SIMD blocks of 8). Window k is one of four patterns, so each
        // pattern visits each lane: all equal -> a; [0 5 / 5 3] -> b; NaN at a and d -> d (the last NaN); -inf -> a.
        var s = new PoolShape(1, 1, 2, 32, 2, 2, 2, 2);
        float ni = float.NegativeInfinity, nan = float.NaN;
        var patterns = new[] { (1f, 1f, 1f, 1f, 0), (0f, 5f, 5f, 3f, 1), (nan, 2f, 7f, nan, 3), (ni, ni, ni, ni, 0), (0f, 1f, 2f, 2f, 2) };
        var x = new float[64];
        var dy = new float[16];
        var expected = new float[64];
        for (int k = 0; k < 16; k++)
        {
            var (a, b, c, d, win) = patterns[(k * 3) % patterns.Length];
            x[2 * k] = a; x[2 * k + 1] = b; x[32 + 2 * k] = c; x[32 + 2 * k + 1] = d;
            dy[k] = k + 1;
            expected[(win >> 1) * 32 + 2 * k + (win & 1)] = k + 1;
        }
        var dx = Nan(64);
        Pooling.MaxBackwardHost(dx, dy, x, s);
        Assert.Equal(expected, dx);
    }

    static double[] AdaptiveAvgForward(double[] x, int planes, int h, int w, int oh, int ow)
    {
        var y = new double[planes * oh * ow];
        for (int p = 0; p < planes; p++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                {
                    int y0 = (int)Math.Floor((double)i * h / oh), y1 = (int)Math.Ceiling((double)(i + 1) * h / oh);
                    int x0 = (int)Math.Floor((double)j * w / ow), x1 = (int)Math.Ceiling((double)(j + 1) * w / ow);
                    double s = 0;
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++) s += x[(p * h + iy) * w + ix];
                    y[(p * oh + i) * ow + j] = s / ((y1 - y0) * (x1 - x0));
                }
        return y;
    }

    [Theory]
    [InlineData(1, 2, 5, 7, 3, 2)]   // overlapping bins both ways
    [InlineData(2, 1, 5, 7, 7, 3)]   // more output rows than input rows
    [InlineData(1, 1, 4, 6, 2, 3)]   // exact division
    public void AdaptiveAvgPoolGradientMatchesFiniteDifferences(int n, int c, int h, int w, int oh, int ow)
    {
        var x = Random(19, n * c * h * w);
        var g = Random(20, n * c * oh * ow);
        var dx = Nan(x.Length);
        Pooling.AdaptiveAvgBackwardHost(dx, g, n, c, h, w, oh, ow);
        AssertGradient(Numeric(xd => Dot(D(g), AdaptiveAvgForward(xd, n * c, h, w, oh, ow)), x), dx,
            $"adaptive avg dx {(n, c, h, w)} -> {(oh, ow)}");
    }

    // ----- dropout -----

    [Theory]
    [InlineData(0.5f, 42UL)]
    [InlineData(0.1f, 7UL)]
    [InlineData(0.9f, 12345678901UL)]
    public void DropoutGradientMatchesFiniteDifferencesOfItsFixedMask(float p, ulong seed)
    {
        var x = Random(21, 97);
        var g = Random(22, x.Length);
        double scale = 1.0 / (1.0 - p);
        double[] Forward(double[] xd) => xd.Select((v, i) => Dropout.Keep(seed, i, p) ? v * scale : 0).ToArray();

        var y = Nan(x.Length);
        Dropout.ForwardHost(y, x, p, seed);
        HostOpsTests.AssertClose(Forward(D(x)).Select(v => (float)v).ToArray(), y, 0f, 1e-6f, $"dropout forward p={p}");
        var dx = Nan(x.Length);
        Dropout.BackwardHost(dx, g, p, seed);
        AssertGradient(Numeric(xd => Dot(D(g), Forward(xd)), x), dx, $"dropout dx p={p} seed={seed}");
        // Dropped exactly where the mask says, and somewhere kept and somewhere dropped.
        for (int i = 0; i < x.Length; i++) Assert.Equal(Dropout.Keep(seed, i, p), dx[i] != 0f);
        Assert.Contains(dx, v => v == 0f);
        Assert.Contains(dx, v => v != 0f);
    }

    [Fact]
    public void DropoutKeepsAFractionOneMinusPAndSeedsGiveDifferentMasks()
    {
        const int n = 200_000;
        foreach (float p in new[] { 0.1f, 0.5f, 0.8f })
        {
            int kept = 0;
            for (int i = 0; i < n; i++) if (Dropout.Keep(99, i, p)) kept++;
            // Binomial standard deviation is at most sqrt(n)/2 = 224; 5 sigma is about 0.0056 of n.
            Assert.InRange(kept / (double)n, 1 - p - 0.006, 1 - p + 0.006);
        }
        int same = 0, adjacent = 0;
        for (int i = 0; i < n; i++)
        {
            if (Dropout.Keep(1, i, 0.5f) == Dropout.Keep(2, i, 0.5f)) same++;
            if (Dropout.Keep(1, i, 0.5f) == Dropout.Keep(1, i + 1, 0.5f)) adjacent++;
        }
        Assert.InRange(same / (double)n, 0.494, 0.506);     // independent masks agree half the time
        Assert.InRange(adjacent / (double)n, 0.494, 0.506); // and neighbours are uncorrelated
        Assert.True(Enumerable.Range(0, n).All(i => Dropout.Keep(5, i, 0f)), "p = 0 keeps everything");
        Assert.True(Enumerable.Range(0, 1000).All(i => !Dropout.Keep(5, i, 1f)), "p = 1 keeps nothing");
    }

    [Fact]
    public void DropoutInPlaceOnAParallelSizeMatchesOutOfPlace()
    {
        var x = Random(23, 100_001);
        var y = new float[x.Length];
        Dropout.ForwardHost(y, x, 0.3f, 77);
        var inPlace = (float[])x.Clone();
        Dropout.ForwardHost(inPlace, inPlace, 0.3f, 77);
        Assert.Equal(y, inPlace);
        float scale = (float)(1.0 / 0.7);
        for (int i = 0; i < x.Length; i++) Assert.Equal(Dropout.Keep(77, i, 0.3f) ? x[i] * scale : 0f, y[i]);
        var dx = (float[])x.Clone();
        Dropout.BackwardHost(dx, dx, 0.3f, 77);
        Assert.Equal(y, dx); // the backward is the same masked scale
        Assert.Throws<ArgumentOutOfRangeException>(() => Dropout.ForwardHost(y, x, 1.5f, 1));
    }

    // ----- softmax cross-entropy -----

    static double CrossEntropy(double[] logits, int[] labels, int rows, int cols)
    {
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            double m = double.NegativeInfinity;
            for (int j = 0; j < cols; j++) m = Math.Max(m, logits[r * cols + j]);
            double s = 0;
            for (int j = 0; j < cols; j++) s += Math.Exp(logits[r * cols + j] - m);
            total += Math.Log(s) + m - logits[r * cols + labels[r]];
        }
        return total / rows;
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 5)]
    [InlineData(4, 10)]
    public void SoftmaxCrossEntropyLossAndGradientMatchFiniteDifferences(int rows, int cols)
    {
        var logits = Random(24, rows * cols, 4f);
        var rng = new Random(25);
        var labels = Enumerable.Range(0, rows).Select(_ => rng.Next(cols)).ToArray();
        var d = Nan(logits.Length);
        double loss = Loss.SoftmaxCrossEntropyHost(d, logits, labels, rows, cols);
        double expected = CrossEntropy(D(logits), labels, rows, cols);
        Assert.True(Math.Abs(loss - expected) <= 1e-12 * (1 + Math.Abs(expected)), $"loss {loss:R}, expected {expected:R}");
        if (cols == 1)
        {
            // One class: the loss is 0 and so is its gradient.
            Assert.Equal(0.0, loss);
            Assert.All(d, v => Assert.Equal(0f, v));
            return;
        }
        AssertGradient(Numeric(x => CrossEntropy(x, labels, rows, cols), logits), d, $"softmax cross-entropy ({rows}, {cols})");
        // Rows of (softmax - onehot)/rows sum to 0.
        for (int r = 0; r < rows; r++) Assert.True(Math.Abs(d.Skip(r * cols).Take(cols).Sum(v => (double)v)) < 1e-6);
    }

    [Fact]
    public void SoftmaxCrossEntropyStableForLargeLogitsAndRejectsBadLabels()
    {
        var logits = new[] { 1000f, 0f, -1000f, 50f, 60f, 70f };
        var d = new float[6];
        double loss = Loss.SoftmaxCrossEntropyHost(d, logits, new[] { 0, 1 }, 2, 3);
        double row1 = 10 + Math.Log(1 + Math.Exp(-10) + Math.Exp(-20)); // label 1: 60 against a max of 70
        Assert.Equal((0 + row1) / 2, loss, 12);
        Assert.Equal(0f, d[0]);                     // softmax 1 - onehot 1
        Assert.Equal(-0.5f * (1 - (float)Math.Exp(-row1)), d[4], 6);

        var e = Assert.Throws<ArgumentException>(() => Loss.SoftmaxCrossEntropyHost(d, logits, new[] { 0, 7 }, 2, 3));
        Assert.Contains("row 1", e.Message);
        Assert.Contains("label 7", e.Message);
        e = Assert.Throws<ArgumentException>(() => Loss.SoftmaxCrossEntropyHost(d, logits, new[] { -1, 0 }, 2, 3));
        Assert.Contains("row 0 has label -1", e.Message);
    }
}
