using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using ILGPU;
using ILGPU.Runtime;
using Tp7.Engine.Kernels;

namespace Tp7.Tests;

/// <summary>
/// Convolution backward (dx overwrites; dw and db accumulate): every host version against finite differences of a
/// double-precision forward on tiny shapes, the fast host versions against V1 on odd shapes, the gradient rule,
/// and every ILGPU version against its host twin on the 256-thread CPU simulator.
/// </summary>
public sealed class Conv2dBackwardTests(CpuSimulatorFixture fx) : IClassFixture<CpuSimulatorFixture>
{
    static float[] Random(int seed, long n, float scale = 1f)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (long i = 0; i < n; i++) v[i] = scale * (2f * rng.NextSingle() - 1f);
        return v;
    }

    static float[] Filled(long n, float value) { var a = new float[n]; Array.Fill(a, value); return a; }

    static void AssertPassed(Comparison c, string what, ConvShape s) => Assert.True(c.Passed, $"{what} [{s}]: {c}");

    delegate void DataFn(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, ConvShape s);
    delegate void WeightFn(Span<float> dw, Span<float> db, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ConvShape s);

    static readonly (string Name, DataFn Fn, Func<ConvShape, bool> Supports)[] DataVersions =
    [
        ("BackwardDataHost", Conv2d.BackwardDataHost, _ => true),
        ("V1Naive", Conv2d.BackwardDataHost_V1Naive, _ => true),
        ("V2Col2im", Conv2d.BackwardDataHost_V2Col2im, _ => true),
        ("V3FlippedForward", Conv2d.BackwardDataHost_V3FlippedForward,
            s => s.StrideH == 1 && s.StrideW == 1 && s.PadH < s.R && s.PadW < s.S),
    ];

    static bool Winograd(ConvShape s) => s.R == 3 && s.S == 3 && s.StrideH == 1 && s.StrideW == 1 && s.PadH == 1 && s.PadW == 1;

    static readonly (string Name, WeightFn Fn, Func<ConvShape, bool> Supports)[] WeightVersions =
    [
        ("BackwardWeightHost", Conv2d.BackwardWeightHost, _ => true),
        ("V1Naive", Conv2d.BackwardWeightHost_V1Naive, _ => true),
        ("V2Im2colGemm", Conv2d.BackwardWeightHost_V2Im2colGemm, _ => true),
        ("V3Winograd", Conv2d.BackwardWeightHost_V3Winograd, Winograd),
    ];

    // ---------- 1. Finite differences in double ----------

    /// <summary>L = Σ g ⊙ conv(x, w, b), the direct loops in double: the specification the gradients differentiate.</summary>
    static double Loss(double[] x, double[] w, double[] b, double[] g, ConvShape s)
    {
        double loss = 0;
        for (int n = 0; n < s.N; n++)
        for (int k = 0; k < s.K; k++)
        for (int oy = 0; oy < s.OutH; oy++)
        for (int ox = 0; ox < s.OutW; ox++)
        {
            double y = b[k];
            for (int c = 0; c < s.C; c++)
            for (int r = 0; r < s.R; r++)
            for (int q = 0; q < s.S; q++)
            {
                int iy = oy * s.StrideH - s.PadH + r, ix = ox * s.StrideW - s.PadW + q;
                if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) continue;
                y += x[((n * s.C + c) * s.H + iy) * s.W + ix] * w[((k * s.C + c) * s.R + r) * s.S + q];
            }
            loss += g[((n * s.K + k) * s.OutH + oy) * s.OutW + ox] * y;
        }
        return loss;
    }

    /// <summary>Central differences of <see cref="Loss"/> with respect to every element of <paramref name="v"/>.</summary>
    static double[] Numerical(double[] v, Func<double> loss)
    {
        const double h = 1e-3;
        var grad = new double[v.Length];
        for (int i = 0; i < v.Length; i++)
        {
            double keep = v[i];
            v[i] = keep + h; double up = loss();
            v[i] = keep - h; double down = loss();
            v[i] = keep;
            grad[i] = (up - down) / (2 * h);
        }
        return grad;
    }

    /// <summary>|ours - numerical| ≤ 1e-3·max|numerical| everywhere; reports the worst element.</summary>
    static void AssertGradient(double[] numerical, float[] ours, string what, ConvShape s)
    {
        double scale = numerical.Max(Math.Abs), worst = 0;
        int at = 0;
        for (int i = 0; i < numerical.Length; i++)
        {
            double d = Math.Abs(ours[i] - numerical[i]);
            if (d > worst) { worst = d; at = i; }
        }
        Assert.True(scale > 1e-3, $"{what} [{s}]: numerical gradient is ~0 (max {scale:g3}); the case tests nothing");
        Assert.True(worst <= 1e-3 * scale,
            $"{what} [{s}]: worst index {at}: ours {ours[at]:R} vs numerical {numerical[at]:R} (|Δ| {worst:g3}, max |grad| {scale:g3})");
    }

    [Theory]
    [InlineData(2, 3, 5, 6, 4, 3, 3, 1, 1, 1, 1)]  // N = 2, C ≠ K, 3x3 pad 1
    [InlineData(1, 2, 7, 5, 3, 3, 3, 1, 1, 1, 1)]  // 3x3 pad 1, odd H and W: Winograd's last tiles stick out
    [InlineData(1, 2, 7, 6, 3, 3, 3, 2, 2, 1, 1)]  // stride 2
    [InlineData(2, 2, 5, 5, 3, 1, 3, 1, 1, 0, 1)]  // 1x3
    [InlineData(1, 3, 6, 7, 2, 3, 2, 2, 1, 2, 0)]  // 3x2, stride 2x1, pad 2x0
    [InlineData(1, 2, 4, 5, 3, 2, 2, 1, 1, 2, 2)]  // pad 2 > kernel - 1: stride 1 but not a flipped forward
    [InlineData(2, 2, 6, 6, 3, 3, 3, 1, 1, 0, 0)]  // pad 0
    [InlineData(1, 2, 8, 7, 2, 3, 3, 3, 2, 0, 2)]  // stride 3x2: some inputs feed no output
    public void GradientsMatchFiniteDifferences(int n, int c, int h, int w, int k, int r, int q, int sh, int sw, int ph, int pw)
    {
        var s = new ConvShape(n, c, h, w, k, r, q, sh, sw, ph, pw);
        float[] x = Random(1, s.InputLength), wt = Random(2, s.WeightLength), b = Random(3, s.K), g = Random(4, s.OutputLength);
        double[] xd = x.Select(v => (double)v).ToArray(), wd = wt.Select(v => (double)v).ToArray();
        double[] bd = b.Select(v => (double)v).ToArray(), gd = g.Select(v => (double)v).ToArray();
        var ndx = Numerical(xd, () => Loss(xd, wd, bd, gd, s));
        var ndw = Numerical(wd, () => Loss(xd, wd, bd, gd, s));
        var ndb = Numerical(bd, () => Loss(xd, wd, bd, gd, s));

        foreach (var (name, fn, supports) in DataVersions)
        {
            if (!supports(s)) continue;
            var dx = Filled(s.InputLength, float.NaN);
            fn(dx, g, wt, s);
            AssertGradient(ndx, dx, $"dx {name}", s);
        }
        foreach (var (name, fn, supports) in WeightVersions)
        {
            if (!supports(s)) continue;
            var dw = new float[s.WeightLength];
            var db = new float[s.K];
            fn(dw, db, g, x, s);
            AssertGradient(ndw, dw, $"dw {name}", s);
            AssertGradient(ndb, db, $"db {name}", s);
        }
    }

    // ---------- 2. Fast host versions against V1 ----------

    static Gen<ConvShape> OddShapes =>
        from n in Gen.Elements(1, 1, 2, 3)
        from c in Gen.Choose(1, 9)
        from h in Gen.Choose(1, 15)
        from w in Gen.Choose(1, 15)
        from k in Gen.Choose(1, 40)
        from r in Gen.Choose(1, 4)
        from q in Gen.Choose(1, 4)
        from sh in Gen.Elements(1, 1, 2, 3)
        from sw in Gen.Elements(1, 1, 2)
        from ph in Gen.Choose(0, 2)
        from pw in Gen.Choose(0, 2)
        let s = new ConvShape(n, c, h, w, k, r, q, sh, sw, ph, pw)
        where s.OutH > 0 && s.OutW > 0
        select s;

    /// <summary>Fast dx and dw/db against V1 with <see cref="Tolerance.Dot"/> of each reduction length (dx: K·R·S,
    /// dw: N·OH·OW); dx starts as NaN so an unwritten element fails, dw and db start random so a dropped += fails.</summary>
    static void CheckFastAgainstNaive(ConvShape s, int seed)
    {
        float[] x = Random(seed, s.InputLength), wt = Random(seed + 1, s.WeightLength, 1f / MathF.Sqrt(s.K * s.R * s.S));
        float[] dy = Random(seed + 2, s.OutputLength);
        var expected = new float[s.InputLength];
        Conv2d.BackwardDataHost_V1Naive(expected, dy, wt, s);
        foreach (var (name, fn, supports) in DataVersions[2..].Prepend(DataVersions[0]))
        {
            if (!supports(s)) continue;
            var dx = Filled(s.InputLength, float.NaN);
            fn(dx, dy, wt, s);
            AssertPassed(Comparison.Of(dx, expected, Tolerance.Dot((long)s.K * s.R * s.S)), $"dx {name} vs V1", s);
        }
        float[] dw0 = Random(seed + 3, s.WeightLength), db0 = Random(seed + 4, s.K);
        var dwRef = (float[])dw0.Clone(); var dbRef = (float[])db0.Clone();
        Conv2d.BackwardWeightHost_V1Naive(dwRef, dbRef, dy, x, s);
        long reduction = (long)s.N * s.OutH * s.OutW;
        foreach (var (name, fn, supports) in WeightVersions[2..].Prepend(WeightVersions[0]))
        {
            if (!supports(s)) continue;
            var dw = (float[])dw0.Clone(); var db = (float[])db0.Clone();
            fn(dw, db, dy, x, s);
            AssertPassed(Comparison.Of(dw, dwRef, Tolerance.Dot(reduction)), $"dw {name} vs V1", s);
            AssertPassed(Comparison.Of(db, dbRef, Tolerance.Dot(reduction)), $"db {name} vs V1", s);
        }
    }

    [Property(MaxTest = 60)]
    public Property FastHostVersionsMatchNaiveOnOddShapes()
        => Prop.ForAll(OddShapes.ToArbitrary(), Gen.Choose(0, 10000).ToArbitrary(), (s, seed) => CheckFastAgainstNaive(s, seed));

    /// <summary>3x3 stride-1 pad-1 shapes, the ones Winograd (V3) computes: odd and even sizes, 1-wide images,
    /// channel counts that are not multiples of the micro-kernel's 6 x 16.</summary>
    static Gen<ConvShape> WinogradShapes =>
        from n in Gen.Choose(1, 3)
        from c in Gen.Choose(1, 21)
        from h in Gen.Choose(1, 19)
        from w in Gen.Choose(1, 19)
        from k in Gen.Choose(1, 40)
        select ConvShape.Square(n, c, h, w, k, 3, 1, 1);

    [Property(MaxTest = 60)]
    public Property FastHostVersionsMatchNaiveOnWinogradShapes()
        => Prop.ForAll(WinogradShapes.ToArbitrary(), Gen.Choose(0, 10000).ToArbitrary(), (s, seed) => CheckFastAgainstNaive(s, seed));

    [Theory]
    [InlineData(2, 64, 9, 11, 70, 3, 1, 1)]    // VGG-like: dx runs as a flipped forward on Winograd (K ≥ 64)
    [InlineData(1, 65, 6, 5, 64, 3, 1, 1)]     // odd sizes on the Winograd path, C > 64
    [InlineData(2, 70, 13, 7, 20, 3, 1, 1)]    // K < 64: the flipped forward runs on the im2col GEMM
    [InlineData(3, 24, 17, 23, 10, 1, 1, 0)]   // 1x1 stride 1: dw reads x directly
    [InlineData(1, 5, 37, 41, 8, 7, 2, 3)]     // 7x7 stride 2: col2im
    [InlineData(1, 300, 6, 6, 9, 3, 1, 1)]     // C·R·S = 2700 columns of dw over several tasks
    [InlineData(3, 67, 13, 10, 83, 3, 1, 1)]   // C, K ≥ 64, not multiples of 6 or 16
    [InlineData(3, 5, 57, 55, 7, 3, 1, 1)]     // 2436 tiles: Winograd's 8 partitions walk 1 or 2 chunks of 256 each
    public void FastHostVersionsMatchNaiveOnLayerLikeShapes(int n, int c, int h, int w, int k, int kernel, int stride, int pad)
        => CheckFastAgainstNaive(ConvShape.Square(n, c, h, w, k, kernel, stride, pad), 7);

    // ---------- 3. The gradient rule ----------

    [Theory]
    [InlineData(2, 5, 7, 6, 4, 3, 1, 1)]
    [InlineData(1, 64, 8, 8, 64, 3, 1, 1)]
    [InlineData(2, 3, 9, 8, 5, 3, 2, 0)]
    public void BackwardWeightAccumulatesAndBackwardDataOverwrites(int n, int c, int h, int w, int k, int kernel, int stride, int pad)
    {
        var s = ConvShape.Square(n, c, h, w, k, kernel, stride, pad);
        float[] x = Random(11, s.InputLength), wt = Random(12, s.WeightLength), dy = Random(13, s.OutputLength);
        foreach (var (name, fn, supports) in WeightVersions)
        {
            if (!supports(s)) continue;
            var once = new float[s.WeightLength]; var onceB = new float[s.K];
            fn(once, onceB, dy, x, s);
            Assert.Contains(once, v => v != 0f);
            var twice = new float[s.WeightLength]; var twiceB = new float[s.K];
            fn(twice, twiceB, dy, x, s);
            fn(twice, twiceB, dy, x, s);
            AssertPassed(Comparison.Of(twice, once.Select(v => 2 * v).ToArray(), new Tolerance(1e-6, 1e-6)), $"dw {name} twice = 2x once", s);
            AssertPassed(Comparison.Of(twiceB, onceB.Select(v => 2 * v).ToArray(), new Tolerance(1e-6, 1e-6)), $"db {name} twice = 2x once", s);
            // An empty db means no bias: dw is unchanged by that choice.
            var noBias = new float[s.WeightLength];
            fn(noBias, Span<float>.Empty, dy, x, s);
            Assert.Equal(once, noBias);
        }
        foreach (var (name, fn, supports) in DataVersions)
        {
            if (!supports(s)) continue;
            var fresh = new float[s.InputLength];
            fn(fresh, dy, wt, s);
            Assert.Contains(fresh, v => v != 0f);
            var prefilled = Random(14, s.InputLength, 100f);
            fn(prefilled, dy, wt, s);
            Assert.Equal(fresh, prefilled);
        }
    }

    /// <summary>Winograd's partitions depend on the shape only: two calls give the same bits (training's resume
    /// test relies on it). The shape has several partitions with more than one chunk each.</summary>
    [Theory]
    [InlineData(3, 5, 57, 55, 7)]
    [InlineData(2, 70, 20, 19, 66)]
    public void BackwardWeightWinogradIsDeterministic(int n, int c, int h, int w, int k)
    {
        var s = ConvShape.Square(n, c, h, w, k, 3, 1, 1);
        float[] x = Random(21, s.InputLength), dy = Random(22, s.OutputLength);
        var first = new float[s.WeightLength]; var second = new float[s.WeightLength];
        var firstB = new float[s.K]; var secondB = new float[s.K];
        Conv2d.BackwardWeightHost_V3Winograd(first, firstB, dy, x, s);
        Conv2d.BackwardWeightHost_V3Winograd(second, secondB, dy, x, s);
        Assert.Contains(first, v => v != 0f);
        Assert.Equal(first, second);
        Assert.Equal(firstB, secondB);
    }

    [Fact]
    public void BackwardWeightWinogradRejectsOtherShapes()
    {
        var s = ConvShape.Square(1, 2, 6, 6, 3, 3, 2, 1);
        var e = Assert.Throws<ArgumentException>(() => Conv2d.BackwardWeightHost_V3Winograd(
            new float[s.WeightLength], new float[s.K], new float[s.OutputLength], new float[s.InputLength], s));
        Assert.Contains("3x3 stride-1 pad-1", e.Message);
    }

    [Fact]
    public void InvalidShapesAndLengthsAreRejectedWithTheShape()
    {
        var bad = ConvShape.Square(1, 2, 2, 2, 3, 5, 1, 1); // 5x5 filter on a padded 4x4 input
        var e = Assert.Throws<ArgumentException>(() => Conv2d.BackwardDataHost(new float[8], new float[1], new float[150], bad));
        Assert.StartsWith("conv2d: invalid shape conv N=1 C=2", e.Message);
        Assert.Throws<ArgumentException>(() => new ConvShape(1, 1, 4, 4, 0, 3, 3).Validate());
        Assert.Throws<ArgumentException>(() => new ConvShape(1, 1, 4, 4, 1, 3, 3, PadH: -1).Validate());

        var s = ConvShape.Square(1, 2, 5, 5, 3, 3, 1, 1);
        var e2 = Assert.Throws<ArgumentException>(() =>
            Conv2d.BackwardWeightHost(new float[s.WeightLength], new float[s.K + 1], new float[s.OutputLength], new float[s.InputLength], s));
        Assert.StartsWith($"db: buffer has {s.K + 1} elements, expected {s.K}", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() =>
            Conv2d.BackwardDataHost(new float[s.InputLength], new float[s.OutputLength - 1], new float[s.WeightLength], s));
        Assert.StartsWith($"dy: buffer has {s.OutputLength - 1} elements, expected {s.OutputLength}", e3.Message);
    }

    // ---------- 4. ILGPU kernels against the host twin on the CPU simulator ----------

    private static int _seed = 500;

    // Small, since the simulator runs each of a group's 256 threads as an OS thread: up to 2 x 2 tiles of dx
    // (C up to 70 crosses a 64-row tile) and dw (K up to 70, C·R·S up to 8·16), long reductions split over groups.
    static Gen<ConvShape> SimulatorShapes =>
        from n in Gen.Elements(1, 1, 2)
        from c in Gen.Elements(1, 3, 8, 70)
        from h in Gen.Choose(1, 11)
        from w in Gen.Choose(1, 11)
        from k in Gen.Elements(1, 5, 17, 70)
        from r in Gen.Choose(1, 4)
        from q in Gen.Choose(1, 4)
        from sh in Gen.Choose(1, 3)
        from sw in Gen.Choose(1, 3)
        from ph in Gen.Choose(0, 2)
        from pw in Gen.Choose(0, 2)
        let s = new ConvShape(n, c > 8 && k > 17 ? 8 : c, h, w, k, r, q, sh, sw, ph, pw)
        where s.OutH > 0 && s.OutW > 0
        select s;

    static Gen<Conv2dBackwardVersion> GpuVersions => Gen.Elements(Conv2dBackwardVersion.V1Naive, Conv2dBackwardVersion.V2Tiled, Conv2dBackwardVersion.V3Tiled128);

    static void AssertPassed(SelfTestResult r) => Assert.True(r.Passed, r.ToString());

    [Property(MaxTest = 16)]
    public Property GpuBackwardDataMatchesHost()
        => Prop.ForAll(SimulatorShapes.ToArbitrary(), GpuVersions.ToArbitrary(), (s, v) => AssertPassed(
            KernelSelfTest.ConvBackwardDataCase(fx.Accelerator, fx.Conv, v, "generated", s, Interlocked.Increment(ref _seed), timed: false)));

    [Property(MaxTest = 16)]
    public Property GpuBackwardWeightMatchesHost()
        => Prop.ForAll(SimulatorShapes.ToArbitrary(), GpuVersions.ToArbitrary(), Gen.Elements(true, true, false).ToArbitrary(), (s, v, bias) => AssertPassed(
            KernelSelfTest.ConvBackwardWeightCase(fx.Accelerator, fx.Conv, v, "generated", s, bias, Interlocked.Increment(ref _seed), timed: false)));

    /// <summary>Every version on fixed shapes that reach every tile edge: dx rows past one 64- and one 128-channel tile,
    /// dw rows and columns past one tile, a reduction (N·OH·OW = 2·24·24) split over several groups, 1x1 and stride 2
    /// (the shift path of V3's gather), stride 3 (its division path), batch 1.</summary>
    [Theory]
    [InlineData(1, 65, 5, 7, 3, 3, 3, 1, 1, 1, 1)]
    [InlineData(1, 130, 6, 5, 3, 3, 3, 1, 1, 1, 1)]
    [InlineData(2, 5, 9, 11, 131, 1, 1, 2, 2, 0, 0)]
    [InlineData(1, 15, 10, 9, 7, 3, 2, 3, 2, 1, 0)]
    [InlineData(2, 8, 24, 24, 65, 3, 3, 1, 1, 1, 1)]
    [InlineData(1, 3, 9, 8, 4, 2, 3, 2, 1, 0, 2)]
    public void GpuBackwardMatchesHostOnTileEdges(int n, int c, int h, int w, int k, int r, int q, int sh, int sw, int ph, int pw)
    {
        var s = new ConvShape(n, c, h, w, k, r, q, sh, sw, ph, pw);
        foreach (var v in new[] { Conv2dBackwardVersion.V1Naive, Conv2dBackwardVersion.V2Tiled, Conv2dBackwardVersion.V3Tiled128 })
        {
            AssertPassed(KernelSelfTest.ConvBackwardDataCase(fx.Accelerator, fx.Conv, v, "edges", s, 41, timed: false));
            AssertPassed(KernelSelfTest.ConvBackwardWeightCase(fx.Accelerator, fx.Conv, v, "edges", s, hasBias: true, 42, timed: false));
        }
    }

    [Fact]
    public void GpuLaunchersRejectWrongLengthsNamingTheTensor()
    {
        var s = ConvShape.Square(1, 3, 8, 8, 4, 3, 1, 1);
        using var dx = fx.Accelerator.Allocate1D<float>(s.InputLength);
        using var dy = fx.Accelerator.Allocate1D<float>(s.OutputLength + 1);
        using var w = fx.Accelerator.Allocate1D<float>(s.WeightLength);
        using var db = fx.Accelerator.Allocate1D<float>(s.K);
        var e = Assert.Throws<ArgumentException>(() => fx.Conv.BackwardData(dx.View, dy.View, w.View, s));
        Assert.StartsWith($"dy: buffer has {s.OutputLength + 1} elements, expected {s.OutputLength} for conv N=1", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => fx.Conv.BackwardWeight(w.View, db.View, dy.View.SubView(0, s.OutputLength), dx.View.SubView(1, s.InputLength - 1), s));
        Assert.StartsWith($"x: buffer has {s.InputLength - 1} elements, expected {s.InputLength}", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => fx.Conv.BackwardData(dx.View, dy.View, w.View, ConvShape.Square(1, 3, 2, 2, 4, 5)));
        Assert.StartsWith("conv2d: invalid shape", e3.Message);
    }

    /// <summary>Without bias the launcher takes an empty db view and never touches it.</summary>
    [Fact]
    public void GpuBackwardWeightWithoutBiasTakesAnEmptyDb()
    {
        var s = new ConvShape(2, 3, 7, 6, 5, 3, 2, 2, 1, 1, 0);
        float[] dyHost = Random(61, s.OutputLength), xHost = Random(62, s.InputLength);
        var expected = new float[s.WeightLength];
        Conv2d.BackwardWeightHost(expected, Span<float>.Empty, dyHost, xHost, s);
        using var dy = fx.Accelerator.Allocate1D(dyHost);
        using var x = fx.Accelerator.Allocate1D(xHost);
        foreach (var v in new[] { Conv2dBackwardVersion.V1Naive, Conv2dBackwardVersion.V2Tiled, Conv2dBackwardVersion.V3Tiled128 })
        {
            using var dw = fx.Accelerator.Allocate1D<float>(s.WeightLength);
            dw.MemSetToZero();
            fx.Conv.BackwardWeight(v, dw.View, ArrayView<float>.Empty, dy.View, x.View, s, hasBias: false);
            fx.Accelerator.Synchronize();
            AssertPassed(Comparison.Of(dw.GetAsArray1D(), expected, Tolerance.Dot((long)s.N * s.OutH * s.OutW)), $"dw {v} without bias", s);
        }
    }
}
