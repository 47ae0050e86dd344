using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using ILGPU;
using ILGPU.Runtime;
using Tp7.Engine.Kernels;

namespace Tp7.Tests;

/// <summary>
/// The op objects of <see cref="CpuSimulatorFixture"/> a second time, with <c>UseGeneralKernels</c> set: the 64-bit-index,
/// scalar-load kernels that tensors of 2^31 elements or more and views off a 16-byte boundary take.
/// </summary>
public sealed class GeneralKernelsFixture : IDisposable
{
    public Context Context { get; } = Accelerators.CreateCpuSimulatorContext();
    public Accelerator Accelerator { get; }
    public ActivationsGpu Act { get; }
    public ElementwiseGpu Elementwise { get; }
    public PoolingGpu Pool { get; }
    public DropoutGpu Drop { get; }
    public OptimizersGpu Optim { get; }
    public ActivationsGpu ActGeneral { get; }
    public ElementwiseGpu ElementwiseGeneral { get; }
    public PoolingGpu PoolGeneral { get; }
    public DropoutGpu DropGeneral { get; }
    public OptimizersGpu OptimGeneral { get; }

    public GeneralKernelsFixture()
    {
        Accelerator = Context.GetPreferredDevice(preferCPU: true).CreateAccelerator(Context);
        Act = new ActivationsGpu(Accelerator);
        Elementwise = new ElementwiseGpu(Accelerator);
        Pool = new PoolingGpu(Accelerator);
        Drop = new DropoutGpu(Accelerator);
        Optim = new OptimizersGpu(Accelerator);
        ActGeneral = new ActivationsGpu(Accelerator) { UseGeneralKernels = true };
        ElementwiseGeneral = new ElementwiseGpu(Accelerator) { UseGeneralKernels = true };
        PoolGeneral = new PoolingGpu(Accelerator) { UseGeneralKernels = true };
        DropGeneral = new DropoutGpu(Accelerator) { UseGeneralKernels = true };
        OptimGeneral = new OptimizersGpu(Accelerator) { UseGeneralKernels = true };
    }

    public void Dispose()
    {
        Accelerator.Dispose();
        Context.Dispose();
    }
}

/// <summary>
/// The 32-bit-index and 16-byte-vector kernel versions against the general ones they replace by default, and both
/// against the host twin: lengths that are not multiples of 4 (the vector kernels' scalar tail), views that start 1 to 3
/// floats into their buffer (off the 16-byte boundary, so the launcher falls back to the general kernel), odd pooling
/// shapes. Same arithmetic per element in the same order, so every version must agree with the host twin exactly
/// (ReLU, clip, add, dropout, pooling) or within the existing per-op tolerance (optimiser steps, BatchNorm, average
/// pools), and the versions with one another bit for bit. Also <see cref="FastDivmod"/> against integer division.
/// </summary>
public sealed class KernelVersionsTests(GeneralKernelsFixture fx) : IClassFixture<GeneralKernelsFixture>
{
    private const int Cases = 15;
    private static int _seed = 9000;
    private Accelerator Acc => fx.Accelerator;

    private static float[] Random(int seed, long n, float scale = 1f) => KernelSelfTest.RandomArray(new Random(seed), n, scale);

    /// <summary>Runs <paramref name="launch"/> on buffers holding <paramref name="inputs"/> (each prefixed by
    /// <paramref name="offset"/> NaN floats and viewed past them) and returns every buffer's viewed part afterwards.</summary>
    private float[][] Run(int offset, float[][] inputs, Action<ArrayView<float>[]> launch)
    {
        var bufs = inputs.Select(a => Acc.Allocate1D(Enumerable.Repeat(float.NaN, offset).Concat(a).ToArray())).ToArray();
        try
        {
            launch(bufs.Select((b, i) => (ArrayView<float>)b.View.SubView(offset, inputs[i].Length)).ToArray());
            Acc.Synchronize();
            return bufs.Select(b => b.GetAsArray1D()[offset..]).ToArray();
        }
        finally { foreach (var b in bufs) b.Dispose(); }
    }

    private static void AssertClose(float[] got, float[] expected, Tolerance tol, string what)
    {
        var c = Comparison.Of(got, expected, tol);
        Assert.True(c.Passed, $"{what}: {c} (tol {tol})");
    }

    private static void AssertBitEqual(float[] a, float[] b, string what)
    {
        Assert.Equal(b.Length, a.Length);
        for (int i = 0; i < a.Length; i++)
            if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i]))
                Assert.Fail($"{what}: index {i} of {a.Length}: default version {a[i]:R}, general version {b[i]:R}");
    }

    private static Gen<int> Lengths => Gen.OneOf(Gen.Choose(1, 9), Gen.Choose(10, 3000));
    private static Gen<int> Offsets => Gen.Elements(0, 0, 1, 2, 3);

    [Property(MaxTest = 200)]
    public Property FastDivmodEqualsIntegerDivision()
    {
        var divisors = Gen.OneOf(Gen.Choose(1, 70), Gen.Choose(0, 30).Select(k => 1 << k), Gen.Choose(1, int.MaxValue));
        var numerators = Gen.OneOf(Gen.Choose(0, 5000), Gen.Choose(0, int.MaxValue), Gen.Elements(int.MaxValue, int.MaxValue - 1));
        return Prop.ForAll(divisors.ToArbitrary(), numerators.ToArbitrary(), (d, n) =>
        {
            var f = new FastDivmod(d);
            foreach (int x in new[] { n, n / d * d, Math.Max(0, n / d * d - 1), int.MaxValue - n % 7 })
            {
                int q = f.DivRem(x, out int r);
                Assert.True(q == x / d && r == x % d, $"{x} / {d}: fast divmod gives ({q}, {r}), expected ({x / d}, {x % d}); {f}");
            }
        });
    }

    [Fact]
    public void FastDivmodIsExactForEverySmallNumeratorAndDivisor()
    {
        for (int d = 1; d <= 300; d++)
        {
            var f = new FastDivmod(d);
            for (int n = 0; n <= 5000; n++)
                if (f.Div(n) != n / d) Assert.Fail($"{n} / {d}: fast divmod gives {f.Div(n)}; {f}");
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new FastDivmod(0));
    }

    [Property(MaxTest = Cases)]
    public Property UnaryActivationsAndAddMatchHostInEveryVersion()
        => Prop.ForAll(Lengths.ToArbitrary(), Offsets.ToArbitrary(), (len, offset) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var x = Random(seed, len);
            var z = Random(seed + 1, len);
            x[0] = float.NaN;
            var relu = new float[len]; Activations.ReluHost(relu, x);
            var clip = new float[len]; Activations.ClipHost(clip, x, -0.25f, 0.5f);
            var leaky = new float[len]; Activations.LeakyReluHost(leaky, x, 0.1f);
            var grad = new float[len]; Activations.ReluBackwardHost(grad, z, relu);
            var add = new float[len]; Elementwise.AddHost(add, x, z);
            foreach (var (act, ew, name) in new[] { (fx.Act, fx.Elementwise, "default"), (fx.ActGeneral, fx.ElementwiseGeneral, "general") })
            {
                string what = $"{name} version, length {len}, views at +{offset}";
                var r = Run(offset, [x, new float[len], new float[len], new float[len], new float[len], z, relu, new float[len]], v =>
                {
                    act.Relu(v[1], v[0]);
                    act.Clip(v[2], v[0], -0.25f, 0.5f);
                    act.LeakyRelu(v[3], v[0], 0.1f);
                    ew.Add(v[4], v[0], v[5]);
                    act.ReluBackward(v[7], v[5], v[6]);
                });
                AssertClose(r[1], relu, Tolerance.Exact, $"relu, {what}");
                AssertClose(r[2], clip, Tolerance.Exact, $"clip, {what}");
                AssertClose(r[3], leaky, Tolerance.Exact, $"leaky relu, {what}");
                AssertClose(r[4], add, Tolerance.Exact, $"add, {what}");
                AssertClose(r[7], grad, Tolerance.Exact, $"relu backward, {what}");
            }
        });

    [Property(MaxTest = Cases)]
    public Property DropoutMasksAgreeInEveryVersion()
        => Prop.ForAll(Lengths.ToArbitrary(), Offsets.ToArbitrary(), Gen.Elements(0.1f, 0.5f).ToArbitrary(), (len, offset, p) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var x = Random(seed, len);
            var expected = new float[len];
            Dropout.ForwardHost(expected, x, p, (ulong)seed);
            var a = Run(offset, [x, new float[len]], v => fx.Drop.Forward(v[1], v[0], p, (ulong)seed))[1];
            var b = Run(offset, [x, new float[len]], v => fx.DropGeneral.Forward(v[1], v[0], p, (ulong)seed))[1];
            AssertClose(a, expected, Tolerance.Exact, $"dropout p={p} length {len} at +{offset}");
            AssertBitEqual(a, b, $"dropout p={p} length {len} at +{offset}");
        });

    [Property(MaxTest = Cases)]
    public Property OptimiserStepsAgreeInEveryVersion()
        => Prop.ForAll(Lengths.ToArbitrary(), Offsets.ToArbitrary(), Gen.Elements(0f, 0.9f).ToArbitrary(), (len, offset, momentum) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var p0 = Random(seed, len);
            var g = Random(seed + 1, len);
            var m0 = Random(seed + 2, len, 0.1f);
            var v0 = Random(seed + 3, len, 0.1f).Select(Math.Abs).ToArray();
            var sgd = new SgdArgs(0.05f, momentum, 5e-4f, Nesterov: momentum != 0f);
            var adam = new AdamWArgs(1e-3f, WeightDecay: 0.01f, Step: 2);
            float[] pS = (float[])p0.Clone(), bS = momentum != 0f ? (float[])m0.Clone() : [];
            Optimizers.SgdStepHost(pS, g, bS, sgd);
            float[] pA = (float[])p0.Clone(), mA = (float[])m0.Clone(), vA = (float[])v0.Clone();
            Optimizers.AdamWStepHost(pA, g, mA, vA, adam);
            var tol = new Tolerance(1e-6, 1e-5);
            float[][]? previous = null;
            foreach (var (optim, name) in new[] { (fx.Optim, "default"), (fx.OptimGeneral, "general") })
            {
                string what = $"{name} version, length {len}, views at +{offset}";
                var r = Run(offset, [p0, g, m0, p0, m0, v0], v =>
                {
                    optim.SgdStep(v[0], v[1], momentum != 0f ? v[2] : ArrayView<float>.Empty, sgd);
                    optim.AdamWStep(v[3], v[1], v[4], v[5], adam);
                });
                AssertClose(r[0], pS, tol, $"sgd param, {what}");
                if (momentum != 0f) AssertClose(r[2], bS, tol, $"sgd momentum, {what}");
                AssertClose(r[3], pA, tol, $"adamw param, {what}");
                AssertClose(r[4], mA, tol, $"adamw m, {what}");
                AssertClose(r[5], vA, tol, $"adamw v, {what}");
                if (previous != null)
                    for (int i = 0; i < r.Length; i++) AssertBitEqual(previous[i], r[i], $"optimiser buffer {i}, length {len} at +{offset}");
                previous = r;
            }
        });

    private static Gen<(int N, int C, int H, int W)> BatchNormShapes =>
        from n in Gen.Choose(1, 3) from c in Gen.Choose(1, 9) from h in Gen.Choose(1, 9) from w in Gen.Choose(1, 11) select (n, c, h, w);

    [Property(MaxTest = Cases)]
    public Property BatchNormMatchesHostInEveryVersion()
        => Prop.ForAll(BatchNormShapes.ToArbitrary(), s =>
        {
            int seed = Interlocked.Increment(ref _seed);
            long plane = (long)s.H * s.W, len = s.N * s.C * plane;
            var x = Random(seed, len);
            var scale = Random(seed + 1, s.C);
            var bias = Random(seed + 2, s.C);
            var mean = Random(seed + 3, s.C, 0.5f);
            var variance = Random(seed + 4, s.C).Select(v => Math.Abs(v) + 0.1f).ToArray();
            var expected = new float[len];
            Elementwise.BatchNormHost(expected, x, scale, bias, mean, variance, s.N, s.C, plane, 1e-5f);
            float[]? first = null;
            foreach (var (ew, name) in new[] { (fx.Elementwise, "default"), (fx.ElementwiseGeneral, "general") })
            {
                var y = Run(0, [x, new float[len], scale, bias, mean, variance],
                    v => ew.BatchNorm(v[1], v[0], v[2], v[3], v[4], v[5], s.N, s.C, plane, 1e-5f))[1];
                AssertClose(y, expected, new Tolerance(1e-5, 1e-5), $"batchnorm {name} version, {s}");
                if (first != null) AssertBitEqual(first, y, $"batchnorm {s}");
                first = y;
            }
        });

    private static Gen<PoolShape> PoolShapes =>
        from n in Gen.Choose(1, 2) from c in Gen.Choose(1, 3) from h in Gen.Choose(1, 12) from w in Gen.Choose(1, 12)
        from kh in Gen.Choose(1, 3) from kw in Gen.Choose(1, 3) from sh in Gen.Choose(1, 3) from sw in Gen.Choose(1, 3)
        from ph in Gen.Choose(0, 1) from pw in Gen.Choose(0, 1)
        where h + 2 * ph >= kh && w + 2 * pw >= kw && ph * 2 <= kh && pw * 2 <= kw
        select new PoolShape(n, c, h, w, kh, kw, sh, sw, ph, pw);

    [Property(MaxTest = Cases)]
    public Property PoolingForwardAndBackwardAgreeInEveryVersion()
        => Prop.ForAll(PoolShapes.ToArbitrary(), s =>
        {
            int seed = Interlocked.Increment(ref _seed);
            // Quantised values so windows tie: the backward's first-max rule is exercised.
            var x = Random(seed, s.InputLength).Select(v => MathF.Round(v * 4f) / 4f).ToArray();
            var dy = Random(seed + 1, s.OutputLength);
            var yMax = new float[s.OutputLength]; Pooling.MaxForwardHost(yMax, x, s);
            var dxMax = new float[s.InputLength]; Pooling.MaxBackwardHost(dxMax, dy, x, s);
            var yAvg = new float[s.OutputLength]; Pooling.AvgForwardHost(yAvg, x, s, countIncludePad: true);
            int oh = Math.Min(3, s.H), ow = Math.Max(1, s.W - 1);
            long adaptiveOut = (long)s.N * s.C * oh * ow;
            var dyAd = Random(seed + 2, adaptiveOut);
            var yAd = new float[adaptiveOut]; Pooling.AdaptiveAvgForwardHost(yAd, x, s.N, s.C, s.H, s.W, oh, ow);
            var dxAd = new float[s.InputLength]; Pooling.AdaptiveAvgBackwardHost(dxAd, dyAd, s.N, s.C, s.H, s.W, oh, ow);
            float[][]? previous = null;
            foreach (var (pool, name) in new[] { (fx.Pool, "default"), (fx.PoolGeneral, "general") })
            {
                string what = $"{name} version, {s}, adaptive to {oh}x{ow}";
                var r = Run(0, [x, new float[s.OutputLength], dy, new float[s.InputLength], new float[s.OutputLength],
                    new float[adaptiveOut], dyAd, new float[s.InputLength]], v =>
                {
                    pool.MaxForward(v[1], v[0], s);
                    pool.MaxBackward(v[3], v[2], v[0], s);
                    pool.AvgForward(v[4], v[0], s, countIncludePad: true);
                    pool.AdaptiveAvgForward(v[5], v[0], s.N, s.C, s.H, s.W, oh, ow);
                    pool.AdaptiveAvgBackward(v[7], v[6], s.N, s.C, s.H, s.W, oh, ow);
                });
                AssertClose(r[1], yMax, Tolerance.Exact, $"max pool, {what}");
                AssertClose(r[3], dxMax, Tolerance.Exact, $"max pool backward, {what}");
                AssertClose(r[4], yAvg, Tolerance.Average, $"average pool, {what}");
                AssertClose(r[5], yAd, Tolerance.Average, $"adaptive average pool, {what}");
                AssertClose(r[7], dxAd, Tolerance.Average, $"adaptive average pool backward, {what}");
                if (previous != null)
                    for (int i = 0; i < r.Length; i++) AssertBitEqual(previous[i], r[i], $"pooling buffer {i}, {s}");
                previous = r;
            }
        });

    /// <summary>
    /// VGG's pool (2x2, stride 2, no padding) on even planes, where the default versions read and write each window as
    /// two float2: ties, NaN and -inf windows, views at +0, +1 (off the 8-byte boundary: 32-bit kernels) and +2 floats.
    /// </summary>
    [Property(MaxTest = Cases)]
    public Property MaxPool2x2MatchesHostInEveryVersion()
        => Prop.ForAll(Gen.Choose(1, 8).ToArbitrary(), Gen.Choose(1, 9).ToArbitrary(), Gen.Elements(0, 1, 2).ToArbitrary(), (hh, hw, offset) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var s = new PoolShape(2, 3, 2 * hh, 2 * hw, 2, 2, 2, 2);
            var x = Random(seed, s.InputLength).Select(v => MathF.Round(v * 3f) / 3f).ToArray();
            x[0] = float.NaN;
            if (x.Length > 7) { x[4] = x[5] = float.NegativeInfinity; x[4 + s.W] = x[5 + s.W] = float.NegativeInfinity; x[7] = float.NaN; }
            var dy = Random(seed + 1, s.OutputLength);
            var y = new float[s.OutputLength]; Pooling.MaxForwardHost_V1Naive(y, x, s);
            var dx = new float[s.InputLength]; Pooling.MaxBackwardHost_V1Naive(dx, dy, x, s);
            float[][]? previous = null;
            foreach (var (pool, name) in new[] { (fx.Pool, "default"), (fx.PoolGeneral, "general") })
            {
                var r = Run(offset, [x, new float[s.OutputLength], dy, Enumerable.Repeat(float.NaN, (int)s.InputLength).ToArray()], v =>
                {
                    pool.MaxForward(v[1], v[0], s);
                    pool.MaxBackward(v[3], v[2], v[0], s);
                });
                AssertClose(r[1], y, Tolerance.Exact, $"max pool 2x2, {name} version, {s}, views at +{offset}");
                AssertClose(r[3], dx, Tolerance.Exact, $"max pool 2x2 backward, {name} version, {s}, views at +{offset}");
                if (previous != null)
                    for (int i = 0; i < r.Length; i++) AssertBitEqual(previous[i], r[i], $"2x2 pooling buffer {i}, {s} at +{offset}");
                previous = r;
            }
        });

    [Property(MaxTest = Cases)]
    public Property StridedSoftmaxMatchesHostInEveryVersion()
        => Prop.ForAll(Gen.Choose(1, 4).ToArbitrary(), Gen.Choose(1, 12).ToArbitrary(), Gen.Choose(2, 40).ToArbitrary(), (outer, axis, inner) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            long len = (long)outer * axis * inner;
            var x = Random(seed, len, 6f);
            var expected = new float[len];
            Activations.SoftmaxAxisHost(expected, x, outer, axis, inner);
            float[]? first = null;
            foreach (var (act, name) in new[] { (fx.Act, "default"), (fx.ActGeneral, "general") })
            {
                var y = Run(0, [x, new float[len]], v => act.SoftmaxAxis(v[1], v[0], outer, axis, inner))[1];
                AssertClose(y, expected, Tolerance.Softmax, $"softmax {name} version, (outer, axis, inner) = {(outer, axis, inner)}");
                if (first != null) AssertBitEqual(first, y, $"softmax {(outer, axis, inner)}");
                first = y;
            }
        });
}
