using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

/// <summary>Per-op tolerance: an element passes when |gpu - ref| ≤ Atol + Rtol·|ref|.</summary>
public readonly record struct Tolerance(double Atol, double Rtol)
{
    /// <summary>
    /// Dot products of length <paramref name="reduction"/> in fp32 with a different summation order (and FMA
    /// contraction) than the host: rounding grows like sqrt(length); terms are O(1) in our tests.
    /// </summary>
    public static Tolerance Dot(long reduction) => new(1e-5 * (1 + Math.Sqrt(reduction)), 1e-5);

    /// <summary>Same operations in the same order (max, relu): bit-exact.</summary>
    public static readonly Tolerance Exact = new(0, 0);

    /// <summary>Same sums in the same order, possibly a different division or contraction.</summary>
    public static readonly Tolerance Average = new(1e-6, 1e-6);

    /// <summary>exp on GPUs is a few ulp off the host's, and the row sum is a tree instead of a double loop.</summary>
    public static readonly Tolerance Softmax = new(1e-6, 1e-5);

    public override string ToString() => $"atol {Atol:g3} + rtol {Rtol:g3}·|ref|";
}

/// <summary>How a kernel's output compares to the host twin's.</summary>
public readonly record struct Comparison(
    double MaxAbsError, double MaxRelError, bool Passed, long WorstIndex, float WorstGpu, float WorstRef, long Length)
{
    /// <summary>
    /// Max abs error, max abs error relative to max |ref|, and the element that most exceeds (or comes closest to)
    /// its tolerance. NaN matches only NaN.
    /// </summary>
    public static Comparison Of(ReadOnlySpan<float> gpu, ReadOnlySpan<float> reference, Tolerance tol)
    {
        if (gpu.Length != reference.Length)
            throw new ArgumentException($"compare: gpu has {gpu.Length} elements, reference {reference.Length}");
        double maxAbs = 0, maxRef = 0, worstExcess = double.NegativeInfinity;
        long worst = -1;
        bool passed = true;
        for (int i = 0; i < gpu.Length; i++)
        {
            float g = gpu[i], r = reference[i];
            double excess;
            if (float.IsNaN(r) || float.IsNaN(g))
                excess = float.IsNaN(r) && float.IsNaN(g) ? double.NegativeInfinity : double.PositiveInfinity;
            else if (float.IsInfinity(r) || float.IsInfinity(g))
                excess = g == r ? double.NegativeInfinity : double.PositiveInfinity;
            else
            {
                double d = Math.Abs((double)g - r);
                maxAbs = Math.Max(maxAbs, d);
                maxRef = Math.Max(maxRef, Math.Abs((double)r));
                excess = d - (tol.Atol + tol.Rtol * Math.Abs((double)r));
            }
            if (double.IsPositiveInfinity(excess)) maxAbs = double.PositiveInfinity;
            if (excess > 0) passed = false;
            if (excess > worstExcess || worst < 0) { worstExcess = excess; worst = i; }
        }
        double rel = maxRef > 0 ? maxAbs / maxRef : maxAbs;
        return new Comparison(maxAbs, rel, passed, worst,
            worst >= 0 ? gpu[(int)worst] : 0f, worst >= 0 ? reference[(int)worst] : 0f, gpu.Length);
    }

    public override string ToString()
        => $"max |Δ| {MaxAbsError:g3}, rel {MaxRelError:g3}; worst index {WorstIndex} of {Length}: gpu {WorstGpu:R} vs ref {WorstRef:R}";
}

/// <summary>
/// One kernel version on one shape against its host twin. <paramref name="NotBuilt"/>: the device's compiler did not
/// build the kernel (<see cref="KernelNotBuiltException"/>), so nothing was compared; neither passed nor failed.
/// </summary>
public sealed record SelfTestResult(
    string Op, string Version, string Shape, Comparison Comparison, Tolerance Tolerance, double GpuMilliseconds,
    string? Error = null, string? NotBuilt = null, string? SkippedBecause = null)
{
    public bool Passed => Error == null && Skipped == false && Comparison.Passed;
    /// <summary>
    /// Not run, neither passed nor failed: the device's compiler did not build the kernel (<see cref="NotBuilt"/>, e.g.
    /// ILGPU's atomics on PoCL), or the version does not run on this accelerator (<see cref="SkippedBecause"/>, e.g. the
    /// tensor-core versions off CUDA).
    /// </summary>
    public bool Skipped => NotBuilt != null || SkippedBecause != null;
    public double MaxAbsError => Comparison.MaxAbsError;
    public double MaxRelError => Comparison.MaxRelError;

    public override string ToString()
        => Skipped ? $"SKIP {Op} {Version} [{Shape}] {NotBuilt ?? SkippedBecause}" :
           $"{(Passed ? "PASS" : "FAIL")} {Op} {Version} [{Shape}] " +
           (Error ?? $"{Comparison} (tol {Tolerance})" + (double.IsNaN(GpuMilliseconds) ? "" : $", {GpuMilliseconds:F3} ms"));
}

/// <summary>
/// Runs every ILGPU kernel version on a set of shapes against its host twin, with random inputs from a fixed seed.
/// Quick: small odd shapes (sizes not multiples of the tile, batch 1, H ≠ W, K > M, every transpose). Full: also
/// VGG16's layer shapes at batch 1 (convolutions, pools) and 2 (classifier). Used by the tests and by `tp7 selftest`
/// on GPU machines, so it depends on nothing but the kernels.
/// </summary>
public static class KernelSelfTest
{
    /// <param name="timed">Also time a second launch of every case (off in unit tests on the CPU simulator, where it only costs).</param>
    /// <param name="precision">Which tensor-core versions to check: fp32 all of them, another precision only its own.
    /// On an accelerator without tensor cores (<see cref="Precisions.HasTensorCores"/>) each is reported as skipped, with the reason.</param>
    public static IReadOnlyList<SelfTestResult> Run(Accelerator acc, bool quick, bool timed = true, Precision precision = Precision.Fp32)
    {
        var results = new List<SelfTestResult>();
        using var gemm = new GemmGpu(acc);
        using var linear = new LinearGpu(acc);
        var conv = new Conv2dGpu(acc);
        var pool = new PoolingGpu(acc);
        var act = new ActivationsGpu(acc);
        int seed = 1234;

        var gemmVersions = acc.MaxNumThreadsPerGroup >= Accelerators.TiledGroupSize
            ? new[] { GemmVersion.V1Naive, GemmVersion.V2Tiled, GemmVersion.V3Tiled128 } : new[] { GemmVersion.V1Naive };
        var convVersions = acc.MaxNumThreadsPerGroup >= Accelerators.TiledGroupSize
            ? new[] { Conv2dVersion.V1Naive, Conv2dVersion.V2ImplicitGemm, Conv2dVersion.V4ImplicitGemm128 } : new[] { Conv2dVersion.V1Naive };
        var convBackwardVersions = acc.MaxNumThreadsPerGroup >= Accelerators.TiledGroupSize
            ? new[] { Conv2dBackwardVersion.V1Naive, Conv2dBackwardVersion.V2Tiled, Conv2dBackwardVersion.V3Tiled128 } : new[] { Conv2dBackwardVersion.V1Naive };

        // GEMM: every transpose on odd sizes, plus alpha/beta with padded leading dimensions.
        var gemmShapes = new List<GemmShape>();
        foreach (var (m, n, k) in new[] { (1, 1, 1), (3, 5, 7), (65, 33, 17), (17, 70, 129) })
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    gemmShapes.Add(new GemmShape(m, n, k, ta, tb));
        gemmShapes.Add(new GemmShape(33, 66, 19, false, true, Lda: 21, Ldb: 23, Ldc: 70, Alpha: 0.5f, Beta: -1.5f));
        gemmShapes.Add(new GemmShape(20, 9, 70, true, false, Lda: 25, Ldb: 11, Ldc: 9, Alpha: -2f, Beta: 1f));
        // Past one 128 x 128 tile on both sides, K not a multiple of the 8-deep slice, 16-byte and scalar paths.
        gemmShapes.Add(new GemmShape(130, 131, 13, false, true));
        gemmShapes.Add(new GemmShape(129, 132, 20, true, false, Lda: 132, Ldb: 136, Ldc: 136, Alpha: 0.5f, Beta: 2f));
        if (!quick)
        {
            gemmShapes.Add(new GemmShape(512, 196, 4608));                       // conv5 as a GEMM at batch 1
            gemmShapes.Add(new GemmShape(1, 4096, 25088, false, true));          // fc6 at batch 1 (x · Wᵀ)
            gemmShapes.Add(new GemmShape(64, 1000, 4096, false, true));          // fc8 at batch 64
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    gemmShapes.Add(new GemmShape(257, 511, 1023, ta, tb));
        }
        var mmaPrecisions = precision == Precision.Fp32 ? new[] { Precision.Tf32, Precision.Fp16, Precision.Bf16 } : new[] { precision };
        var gemmMma = mmaPrecisions.Select(p => p.MmaGemmVersion()!.Value).ToArray();
        var convMma = mmaPrecisions.Select(p => p.MmaConvVersion()!.Value).ToArray();
        string? noMma = Precisions.HasTensorCores(acc) ? null
            : $"{Precisions.WhyNot(Precision.Tf32, acc)}: the tensor-core versions need a CUDA GPU of compute capability 8.0 or newer";
        if (noMma == null)
        {
            gemmVersions = [.. gemmVersions, .. gemmMma];
            convVersions = [.. convVersions, .. convMma];
        }
        else
        {
            foreach (var v in gemmMma) results.Add(Skip("gemm", v.ToString(), noMma));
            foreach (var v in gemmMma) results.Add(Skip("linear", v.ToString(), noMma));
            foreach (var v in convMma) results.Add(Skip("conv2d", v.ToString(), noMma));
        }

        foreach (var s in gemmShapes)
            foreach (var v in gemmVersions)
                results.Add(GemmCase(acc, gemm, v, s, seed++, timed));

        var convShapes = new List<(string Name, ConvShape S, bool Relu)>
        {
            ("odd 3x3 pad 1", ConvShape.Square(1, 3, 7, 9, 5, 3, 1, 1), true),
            ("K>64 stride 2", ConvShape.Square(2, 4, 11, 8, 70, 3, 2, 1), false),
            ("1x1", ConvShape.Square(1, 5, 6, 5, 3, 1), true),
            ("2x3 stride 2x1 pad 0x2", new ConvShape(1, 2, 9, 10, 4, 2, 3, 2, 1, 0, 2), false),
            ("C*R*S>16, 69 pixels", new ConvShape(1, 17, 3, 23, 65, 3, 3, 1, 1, 1, 1), true),
            ("K>128, 2 images of 11x12", ConvShape.Square(2, 6, 11, 12, 131, 3, 1, 1), false),
            ("1x1 stride 2, C*R*S>128", ConvShape.Square(1, 133, 9, 7, 5, 1, 2, 0), true),
        };
        if (!quick)
        {
            // VGG16's distinct convolution shapes at batch 1 (conv1_1 .. conv5_3), 3x3 stride 1 pad 1.
            foreach (var (name, c, k, hw) in new[] {
                         ("conv1_1", 3, 64, 224), ("conv1_2", 64, 64, 224), ("conv2_1", 64, 128, 112), ("conv2_2", 128, 128, 112),
                         ("conv3_1", 128, 256, 56), ("conv3_2", 256, 256, 56), ("conv4_1", 256, 512, 28), ("conv4_2", 512, 512, 28),
                         ("conv5_1", 512, 512, 14) })
                convShapes.Add((name, ConvShape.Square(1, c, hw, hw, k, 3, 1, 1), true));
            // VGG16 at 32 x 32 (CIFAR-sized input), batch 8: planes 32² .. 2², the last not a multiple of 4.
            foreach (var (name, c, k, hw) in new[] {
                         ("conv1_2 32px b8", 64, 64, 32), ("conv3_1 32px b8", 128, 256, 8), ("conv5_3 32px b8", 512, 512, 2) })
                convShapes.Add((name, ConvShape.Square(8, c, hw, hw, k, 3, 1, 1), true));
        }
        foreach (var (name, s, relu) in convShapes)
            foreach (var v in convVersions)
                results.Add(ConvCase(acc, conv, v, name, s, relu, seed++, timed));
        foreach (var (name, s, relu) in convShapes)
            foreach (var v in convBackwardVersions)
            {
                results.Add(ConvBackwardDataCase(acc, conv, v, name, s, seed++, timed));
                results.Add(ConvBackwardWeightCase(acc, conv, v, name, s, hasBias: !relu || quick, seed++, timed));
            }

        var poolShapes = new List<PoolShape>
        {
            new(1, 3, 7, 9, 2, 2, 2, 2),
            new(2, 2, 8, 5, 3, 3, 2, 2, 1, 1),
            new(1, 1, 5, 6, 3, 2, 1, 2, 1, 1),
        };
        if (!quick)
            foreach (var (c, hw) in new[] { (64, 224), (128, 112), (256, 56), (512, 28), (512, 14) })
                poolShapes.Add(new PoolShape(1, c, hw, hw, 2, 2, 2, 2));
        foreach (var s in poolShapes) results.Add(MaxPoolCase(acc, pool, s, seed++, timed));

        var avgShapes = new List<(int N, int C, int H, int W, int OH, int OW)>
            { (1, 3, 7, 7, 7, 7), (2, 2, 13, 10, 7, 7), (1, 2, 5, 3, 7, 7), (1, 4, 14, 15, 7, 7), (1, 1, 9, 4, 2, 3) };
        if (!quick) { avgShapes.Add((1, 512, 7, 7, 7, 7)); avgShapes.Add((2, 512, 14, 14, 7, 7)); }
        foreach (var s in avgShapes) results.Add(AdaptiveAvgCase(acc, pool, s, seed++, timed));

        var linearShapes = new List<(int N, int In, int Out, bool Relu)> { (1, 37, 70, true), (2, 100, 9, false), (3, 25, 130, true) };
        if (!quick) { linearShapes.Add((2, 25088, 4096, true)); linearShapes.Add((2, 4096, 4096, true)); linearShapes.Add((2, 4096, 1000, false)); }
        foreach (var s in linearShapes)
            foreach (var v in gemmVersions)
                results.Add(LinearCase(acc, linear, v, s, seed++, timed));
        // The GEMV at the batches it takes: odd In (scalar loads), In a multiple of 4 (16-byte loads), 1 to 8 rows;
        // full: VGG16's fc6, fc7, fc8 at batch 1 and 8.
        var gemvShapes = new List<(int N, int In, int Out, bool Relu)> { (1, 37, 70, true), (3, 100, 9, false), (8, 64, 13, true), (5, 257, 6, true) };
        if (!quick)
            foreach (int n in new[] { 1, 8 })
            {
                gemvShapes.Add((n, 25088, 4096, true));
                gemvShapes.Add((n, 4096, 4096, true));
                gemvShapes.Add((n, 4096, 1000, false));
            }
        foreach (var s in gemvShapes) results.Add(LinearGemvCase(acc, linear, s, seed++, timed));

        foreach (long len in quick ? new long[] { 1, 1000 } : new long[] { 1, 1000, 1L << 22 })
            results.Add(ReluCase(acc, act, len, seed++, timed));
        var softmaxShapes = new List<(int Rows, int Cols)> { (1, 1), (3, 1000), (2, 37) };
        if (!quick) softmaxShapes.Add((64, 1000));
        foreach (var (rows, cols) in softmaxShapes) results.Add(SoftmaxCase(acc, act, rows, cols, seed++, timed));
        return results;
    }

    /// <summary>Uniform in [-scale, scale) from <paramref name="rng"/>.</summary>
    public static float[] RandomArray(Random rng, long length, float scale = 1f)
    {
        var a = new float[length];
        for (long i = 0; i < length; i++) a[i] = (rng.NextSingle() * 2f - 1f) * scale;
        return a;
    }

    /// <param name="viewOffset">Elements before A, B and C in their buffers (views at an offset, which the 16-byte paths
    /// must notice and leave for scalar ones when it is not a multiple of 4).</param>
    public static SelfTestResult GemmCase(Accelerator acc, GemmGpu gemm, GemmVersion v, GemmShape s, int seed, bool timed = true, int viewOffset = 0)
    {
        var rng = new Random(seed);
        int lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        var a = RandomArray(rng, s.TransA ? (long)(s.K - 1) * lda + s.M : (long)(s.M - 1) * lda + s.K);
        var b = RandomArray(rng, s.TransB ? (long)(s.N - 1) * ldb + s.K : (long)(s.K - 1) * ldb + s.N);
        // beta = 0 must not read C: start from NaN to prove it (and to catch unwritten elements).
        var c0 = s.Beta == 0f ? Filled((long)(s.M - 1) * ldc + s.N, float.NaN) : RandomArray(rng, (long)(s.M - 1) * ldc + s.N);
        var expected = (float[])c0.Clone();
        var p = Precisions.Of(v);
        var tol = Tolerance.Dot(s.K);
        if (p == Precision.Fp32) Gemm.Host(expected, a, b, s);
        else
        {
            Gemm.HostRounded(p, expected, a, b, s);
            tol = Precisions.MmaTolerance(p, s.K, MaxAbs(a), MaxAbs(b));
        }
        using var da = acc.Allocate1D(Offset(a, viewOffset));
        using var db = acc.Allocate1D(Offset(b, viewOffset));
        using var dc = acc.Allocate1D<float>(c0.Length + viewOffset);
        string shape = $"M={s.M} N={s.N} K={s.K} {(s.TransA ? 'T' : 'N')}{(s.TransB ? 'T' : 'N')} lda={lda} ldb={ldb} ldc={ldc} alpha={s.Alpha} beta={s.Beta}"
                       + (viewOffset != 0 ? $" views at +{viewOffset}" : "");
        return Measure(acc, "gemm", v.ToString(), shape, dc, Offset(c0, viewOffset, float.NaN), Offset(expected, viewOffset, float.NaN), tol,
            () => gemm.Run(v, dc.View.SubView(viewOffset, c0.Length), da.View.SubView(viewOffset, a.Length), db.View.SubView(viewOffset, b.Length), s), timed);
    }

    /// <summary>
    /// The data flow of an mma GEMM version on ILGPU's CPU accelerator (256-thread groups: <see cref="Accelerators.CreateCpuSimulatorContext"/>)
    /// with each mma.sync emulated by warp shuffles from the documented fragment layouts, against the host twin:
    /// checks the staging (both layouts, edges, packing), the shared-memory swizzle, the fragment addressing and the
    /// epilogue. Not the PTX text or the hardware: a CUDA GPU of compute capability 8.0 checks those (selftest).
    /// </summary>
    public static SelfTestResult MmaEmulationGemmCase(Accelerator cpu, GemmVersion v, GemmShape s, int seed, bool withBias = false, bool relu = false)
    {
        var rng = new Random(seed);
        var p = Precisions.Of(v);
        int lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        var a = RandomArray(rng, s.TransA ? (long)(s.K - 1) * lda + s.M : (long)(s.M - 1) * lda + s.K);
        var b = RandomArray(rng, s.TransB ? (long)(s.N - 1) * ldb + s.K : (long)(s.K - 1) * ldb + s.N);
        var bias = RandomArray(rng, s.N, 0.5f);
        var c0 = s.Beta == 0f ? Filled((long)(s.M - 1) * ldc + s.N, float.NaN) : RandomArray(rng, (long)(s.M - 1) * ldc + s.N);
        var expected = (float[])c0.Clone();
        Gemm.HostRounded(p, expected, a, b, s);
        if (withBias || relu)
            for (int i = 0; i < s.M; i++)
                for (int j = 0; j < s.N; j++)
                {
                    ref float e = ref expected[(long)i * ldc + j];
                    if (withBias) e += bias[j];
                    if (relu && e < 0f) e = 0f;
                }
        var mma = new GemmMmaGpu(cpu, emulation: true);
        using var da = cpu.Allocate1D(a);
        using var db = cpu.Allocate1D(b);
        using var dbias = cpu.Allocate1D(bias);
        using var dc = cpu.Allocate1D<float>(c0.Length);
        string shape = $"M={s.M} N={s.N} K={s.K} {(s.TransA ? 'T' : 'N')}{(s.TransB ? 'T' : 'N')} lda={lda} ldb={ldb} ldc={ldc} alpha={s.Alpha} beta={s.Beta}" +
                       $"{(withBias ? " +bias" : "")}{(relu ? " +relu" : "")}";
        return Measure(cpu, "gemm (mma emulated)", v.ToString(), shape, dc, c0, expected, Precisions.MmaTolerance(p, s.K, MaxAbs(a), MaxAbs(b)),
            () => mma.Launch(v, dc.View, da.View, db.View, dbias.View, new GemmArgs(s, withBias, relu)), timed: false);
    }

    /// <summary>The convolution counterpart of <see cref="MmaEmulationGemmCase"/>: the im2col gather and the epilogue included.</summary>
    public static SelfTestResult MmaEmulationConvCase(Accelerator cpu, Conv2dVersion v, string name, ConvShape s, bool relu, int seed)
    {
        var rng = new Random(seed);
        var p = Precisions.Of(v);
        int fanIn = s.C * s.R * s.S;
        var x = RandomArray(rng, s.InputLength);
        var w = RandomArray(rng, s.WeightLength, 1f / MathF.Sqrt(fanIn));
        var b = RandomArray(rng, s.K, 0.5f);
        var expected = new float[s.OutputLength];
        Conv2d.ForwardHostRounded(p, expected, x, w, b, s, relu);
        var mma = new Conv2dMmaGpu(cpu, emulation: true);
        using var dx = cpu.Allocate1D(x);
        using var dw = cpu.Allocate1D(w);
        using var db = cpu.Allocate1D(b);
        using var dy = cpu.Allocate1D<float>(s.OutputLength);
        return Measure(cpu, "conv2d (mma emulated)", v.ToString(), $"{name}: {s}{(relu ? " +relu" : "")}", dy, Filled(s.OutputLength, float.NaN),
            expected, Precisions.MmaTolerance(p, fanIn, MaxAbs(x), MaxAbs(w)), () => mma.Launch(v, dy.View, dx.View, dw.View, db.View, new ConvArgs(s, relu), s), timed: false);
    }

    /// <param name="viewOffset">Elements before x, w and y in their buffers (see <see cref="GemmCase"/>).</param>
    public static SelfTestResult ConvCase(Accelerator acc, Conv2dGpu conv, Conv2dVersion v, string name, ConvShape s, bool relu, int seed,
        bool timed = true, int viewOffset = 0)
    {
        var rng = new Random(seed);
        int fanIn = s.C * s.R * s.S;
        var x = RandomArray(rng, s.InputLength);
        var w = RandomArray(rng, s.WeightLength, 1f / MathF.Sqrt(fanIn));
        var b = RandomArray(rng, s.K, 0.5f);
        var expected = new float[s.OutputLength];
        var p = Precisions.Of(v);
        var tol = Tolerance.Dot(fanIn);
        if (p == Precision.Fp32) Conv2d.ForwardHost(expected, x, w, b, s, relu);
        else
        {
            Conv2d.ForwardHostRounded(p, expected, x, w, b, s, relu);
            tol = Precisions.MmaTolerance(p, fanIn, MaxAbs(x), MaxAbs(w));
        }
        using var dx = acc.Allocate1D(Offset(x, viewOffset));
        using var dw = acc.Allocate1D(Offset(w, viewOffset));
        using var db = acc.Allocate1D(b);
        using var dy = acc.Allocate1D<float>(s.OutputLength + viewOffset);
        return Measure(acc, "conv2d", v.ToString(), $"{name}: {s}{(relu ? " +relu" : "")}{(viewOffset != 0 ? $" views at +{viewOffset}" : "")}", dy,
            Filled(s.OutputLength + viewOffset, float.NaN), Offset(expected, viewOffset, float.NaN), tol,
            () => conv.Forward(v, dy.View.SubView(viewOffset, s.OutputLength), dx.View.SubView(viewOffset, s.InputLength),
                dw.View.SubView(viewOffset, s.WeightLength), db.View, s, relu), timed);
    }

    /// <summary>dx = conv_transpose(dy, w) against <see cref="Conv2d.BackwardDataHost"/>; dx starts as NaN (it is overwritten).</summary>
    public static SelfTestResult ConvBackwardDataCase(Accelerator acc, Conv2dGpu conv, Conv2dBackwardVersion v, string name, ConvShape s, int seed, bool timed = true)
    {
        var rng = new Random(seed);
        long reduction = (long)s.K * s.R * s.S;
        var dyHost = RandomArray(rng, s.OutputLength);
        var w = RandomArray(rng, s.WeightLength, 1f / MathF.Sqrt(reduction));
        var expected = new float[s.InputLength];
        Conv2d.BackwardDataHost(expected, dyHost, w, s);
        using var dy = acc.Allocate1D(dyHost);
        using var dw = acc.Allocate1D(w);
        using var dx = acc.Allocate1D<float>(s.InputLength);
        return Measure(acc, "conv2d_backward_data", v.ToString(), $"{name}: {s}", dx, Filled(s.InputLength, float.NaN),
            expected, Tolerance.Dot(reduction), () => conv.BackwardData(v, dx.View, dy.View, dw.View, s), timed);
    }

    /// <summary>
    /// dw += dy · im2col(x)ᵀ and db += Σ dy against <see cref="Conv2d.BackwardWeightHost"/>, both starting from the same
    /// random gradients (they accumulate). dw and db share one buffer (dw then db) so one comparison covers both;
    /// without bias db must come back unchanged.
    /// </summary>
    public static SelfTestResult ConvBackwardWeightCase(Accelerator acc, Conv2dGpu conv, Conv2dBackwardVersion v, string name, ConvShape s,
        bool hasBias, int seed, bool timed = true)
    {
        var rng = new Random(seed);
        long reduction = (long)s.N * s.OutH * s.OutW;
        var dyHost = RandomArray(rng, s.OutputLength);
        var xHost = RandomArray(rng, s.InputLength);
        var init = RandomArray(rng, s.WeightLength + s.K);
        var expected = (float[])init.Clone();
        Conv2d.BackwardWeightHost(expected.AsSpan(0, (int)s.WeightLength),
            hasBias ? expected.AsSpan((int)s.WeightLength, s.K) : Span<float>.Empty, dyHost, xHost, s);
        using var dy = acc.Allocate1D(dyHost);
        using var x = acc.Allocate1D(xHost);
        using var grads = acc.Allocate1D<float>(init.Length);
        var dwView = grads.View.SubView(0, s.WeightLength);
        var dbView = grads.View.SubView(s.WeightLength, s.K);
        return Measure(acc, "conv2d_backward_weight", v.ToString(), $"{name}: {s}{(hasBias ? " +bias" : "")}", grads, init,
            expected, Tolerance.Dot(reduction), () => conv.BackwardWeight(v, dwView, dbView, dy.View, x.View, s, hasBias), timed);
    }

    public static SelfTestResult MaxPoolCase(Accelerator acc, PoolingGpu pool, PoolShape s, int seed, bool timed = true)
    {
        var x = RandomArray(new Random(seed), s.InputLength);
        var expected = new float[s.OutputLength];
        Pooling.MaxForwardHost(expected, x, s);
        using var dx = acc.Allocate1D(x);
        using var dy = acc.Allocate1D<float>(s.OutputLength);
        return Measure(acc, "maxpool", "V1", s.ToString(), dy, Filled(s.OutputLength, float.NaN), expected, Tolerance.Exact,
            () => pool.MaxForward(dy.View, dx.View, s), timed);
    }

    public static SelfTestResult AdaptiveAvgCase(Accelerator acc, PoolingGpu pool, (int N, int C, int H, int W, int OH, int OW) s, int seed, bool timed = true)
    {
        var x = RandomArray(new Random(seed), (long)s.N * s.C * s.H * s.W);
        long outLen = (long)s.N * s.C * s.OH * s.OW;
        var expected = new float[outLen];
        Pooling.AdaptiveAvgForwardHost(expected, x, s.N, s.C, s.H, s.W, s.OH, s.OW);
        using var dx = acc.Allocate1D(x);
        using var dy = acc.Allocate1D<float>(outLen);
        return Measure(acc, "adaptive_avgpool", "V1", $"N={s.N} C={s.C} {s.H}x{s.W} -> {s.OH}x{s.OW}", dy, Filled(outLen, float.NaN),
            expected, Tolerance.Average, () => pool.AdaptiveAvgForward(dy.View, dx.View, s.N, s.C, s.H, s.W, s.OH, s.OW), timed);
    }

    public static SelfTestResult LinearCase(Accelerator acc, LinearGpu linear, GemmVersion v, (int N, int In, int Out, bool Relu) s, int seed, bool timed = true)
    {
        var rng = new Random(seed);
        var x = RandomArray(rng, (long)s.N * s.In);
        var w = RandomArray(rng, (long)s.Out * s.In, 1f / MathF.Sqrt(s.In));
        var b = RandomArray(rng, s.Out, 0.5f);
        var expected = new float[(long)s.N * s.Out];
        var p = Precisions.Of(v);
        var tol = Tolerance.Dot(s.In);
        if (p == Precision.Fp32) Linear.ForwardHost(expected, x, w, b, s.N, s.In, s.Out, s.Relu);
        else
        {
            Linear.ForwardHost(expected, p.Rounded(x), p.Rounded(w), b, s.N, s.In, s.Out, s.Relu);
            tol = Precisions.MmaTolerance(p, s.In, MaxAbs(x), MaxAbs(w));
        }
        using var dx = acc.Allocate1D(x);
        using var dw = acc.Allocate1D(w);
        using var db = acc.Allocate1D(b);
        using var dy = acc.Allocate1D<float>(expected.Length);
        return Measure(acc, "linear", v.ToString(), $"N={s.N} in={s.In} out={s.Out}{(s.Relu ? " +relu" : "")}", dy,
            Filled(expected.Length, float.NaN), expected, tol,
            () => linear.Forward(v, dy.View, dx.View, dw.View, db.View, s.N, s.In, s.Out, s.Relu), timed);
    }

    /// <summary>
    /// The GEMV version of the linear layer (n ≤ <see cref="LinearGpu.GemvMaxRows"/>) against <see cref="Linear.ForwardHost"/>.
    /// With <paramref name="xOffset"/> &gt; 0, x starts that many floats into its buffer, so a view that is not 16-byte
    /// aligned takes the scalar-load kernel even when In is a multiple of 4. The version string says which kernel ran.
    /// </summary>
    public static SelfTestResult LinearGemvCase(Accelerator acc, LinearGpu linear, (int N, int In, int Out, bool Relu) s, int seed,
        bool timed = true, int xOffset = 0)
    {
        var rng = new Random(seed);
        var x = RandomArray(rng, (long)s.N * s.In + xOffset);
        var w = RandomArray(rng, (long)s.Out * s.In, 1f / MathF.Sqrt(s.In));
        var b = RandomArray(rng, s.Out, 0.5f);
        var expected = new float[(long)s.N * s.Out];
        Linear.ForwardHost(expected, x.AsSpan(xOffset), w, b, s.N, s.In, s.Out, s.Relu);
        using var dx = acc.Allocate1D(x);
        using var dw = acc.Allocate1D(w);
        using var db = acc.Allocate1D(b);
        using var dy = acc.Allocate1D<float>(expected.Length);
        var xv = dx.View.SubView(xOffset, (long)s.N * s.In);
        string version = LinearGpu.GemvVectorised(xv, dw.View, s.In) ? "GemvVec4" : "GemvScalar";
        var shape = new LinearShape(s.N, s.In, s.Out);
        return Measure(acc, "linear", version, $"{shape}{(s.Relu ? " +relu" : "")}{(xOffset != 0 ? $" x at +{xOffset}" : "")}, moves {shape.GemvBytes / 1e6:F1} MB",
            dy, Filled(expected.Length, float.NaN), expected, Tolerance.Dot(s.In),
            () => linear.ForwardGemv(dy.View, xv, dw.View, db.View, s.N, s.In, s.Out, s.Relu), timed);
    }

    public static SelfTestResult ReluCase(Accelerator acc, ActivationsGpu act, long length, int seed, bool timed = true)
    {
        var x = RandomArray(new Random(seed), length);
        var expected = new float[length];
        Activations.ReluHost(expected, x);
        using var dx = acc.Allocate1D(x);
        using var dy = acc.Allocate1D<float>(length);
        return Measure(acc, "relu", "V1", $"length {length}", dy, Filled(length, float.NaN), expected, Tolerance.Exact,
            () => act.Relu(dy.View, dx.View), timed);
    }

    public static SelfTestResult SoftmaxCase(Accelerator acc, ActivationsGpu act, int rows, int cols, int seed, bool timed = true)
    {
        // Logits of a few units, as a classifier produces.
        var x = RandomArray(new Random(seed), (long)rows * cols, 8f);
        var expected = new float[x.Length];
        Activations.SoftmaxHost(expected, x, rows, cols);
        using var dx = acc.Allocate1D(x);
        using var dy = acc.Allocate1D<float>(x.Length);
        return Measure(acc, "softmax", "V1", $"rows={rows} cols={cols}", dy, Filled(x.Length, float.NaN), expected, Tolerance.Softmax,
            () => act.Softmax(dy.View, dx.View, rows, cols), timed);
    }

    /// <summary><paramref name="a"/> after <paramref name="offset"/> elements of <paramref name="fill"/>.</summary>
    private static float[] Offset(float[] a, int offset, float fill = 0f)
    {
        if (offset == 0) return a;
        var r = new float[a.Length + offset];
        Array.Fill(r, fill, 0, offset);
        a.CopyTo(r, offset);
        return r;
    }

    private static double MaxAbs(float[] a)
    {
        double m = 0;
        foreach (var v in a) m = Math.Max(m, Math.Abs(v));
        return m;
    }

    private static SelfTestResult Skip(string op, string version, string why)
        => new(op, version, "every shape", default, default, double.NaN, SkippedBecause: why);

    private static float[] Filled(long length, float value)
    {
        var a = new float[length];
        Array.Fill(a, value);
        return a;
    }

    /// <summary>
    /// Checks the first launch (output pre-filled with <paramref name="outputInit"/>) against the host twin, then
    /// times a second launch from the same initial output, synchronised, so compile and first-launch costs stay out.
    /// </summary>
    private static SelfTestResult Measure(Accelerator acc, string op, string version, string shape,
        MemoryBuffer1D<float, Stride1D.Dense> output, float[] outputInit, float[] expected, Tolerance tol, Action launch, bool timed)
    {
        try
        {
            output.CopyFromCPU(outputInit);
            launch();
            acc.Synchronize();
            var got = output.GetAsArray1D();
            var cmp = Comparison.Of(got, expected, tol);
            if (!timed) return new SelfTestResult(op, version, shape, cmp, tol, double.NaN);
            output.CopyFromCPU(outputInit);
            acc.Synchronize();
            var sw = Stopwatch.StartNew();
            launch();
            acc.Synchronize();
            return new SelfTestResult(op, version, shape, cmp, tol, sw.Elapsed.TotalMilliseconds);
        }
        catch (KernelNotBuiltException e)
        {
            return new SelfTestResult(op, version, shape, default, tol, double.NaN, NotBuilt: e.Message);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new SelfTestResult(op, version, shape, default, tol, double.NaN, $"{e.GetType().Name}: {e.Message}");
        }
    }
}
