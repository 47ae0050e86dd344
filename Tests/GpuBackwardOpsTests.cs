using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using ILGPU;
using ILGPU.Runtime;
using Tp7.Engine.Kernels;

using Tp7.Tests.Infrastructure;

namespace Tp7.Tests;

/// <summary>
/// The training kernels (backward ops, dropout, softmax cross-entropy, optimiser steps) against their host twins on
/// FsCheck-generated odd shapes, on every accelerator present (the CPU-simulated GPU, OpenCL). Tolerances (|Δ| ≤ atol + rtol·|ref|): linear
/// <see cref="Tolerance.Dot"/> of the reduction length; ReLU, max pool, dropout and the bias column sum exact (same
/// operations in the same order); adaptive average <see cref="Tolerance.Average"/>; softmax cross-entropy
/// <see cref="Tolerance.Softmax"/>; optimiser steps 1e-6 + 1e-5·|ref| (a GPU may contract multiply-adds into FMAs).
/// Output buffers start as NaN where the op overwrites, and as random values where it accumulates.
/// </summary>
public abstract class GpuBackwardOpsTests(AcceleratorFixture fx)
{
    private const int Cases = 15;
    private static int _seed = 5000;
    private static readonly Tolerance StepTolerance = new(1e-6, 1e-5);

    private Accelerator Acc => fx.Accelerator;

    private static float[] Random(int seed, long n, float scale = 1f) => KernelSelfTest.RandomArray(new Random(seed), n, scale);
    private static float[] Nan(long n) => Enumerable.Repeat(float.NaN, (int)n).ToArray();

    private static void AssertMatches(float[] gpu, float[] host, Tolerance tol, string what)
    {
        var c = Comparison.Of(gpu, host, tol);
        Assert.True(c.Passed, $"{what}: {c} (tol {tol})");
    }

    private float[] Run(float[] init, Action<ArrayView<float>> launch)
    {
        using var buf = Acc.Allocate1D(init);
        launch(buf.View);
        Acc.Synchronize();
        return buf.GetAsArray1D();
    }

    private static Gen<bool> Bool => Gen.Elements(false, true);

    private static Gen<(int N, int In, int Out)> LinearShapes =>
        from n in Gen.Elements(1, 1, 2, 3, 7)
        from i in Gen.Choose(1, 150)
        from o in Gen.Choose(1, 140)
        select (n, i, o);

    [Property(MaxTest = Cases)]
    public Property LinearBackwardDataMatchesHost()
        => Prop.ForAll(LinearShapes.ToArbitrary(), Gen.Elements(GemmVersion.V1Naive, GemmVersion.V2Tiled, GemmVersion.V3Tiled128).ToArbitrary(), (s, v) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var dy = Random(seed, (long)s.N * s.Out);
            var w = Random(seed + 1, (long)s.Out * s.In);
            var expected = new float[(long)s.N * s.In];
            Linear.BackwardDataHost(expected, dy, w, s.N, s.In, s.Out);
            using var ddy = Acc.Allocate1D(dy);
            using var dw = Acc.Allocate1D(w);
            var got = Run(Nan(expected.Length), dx => fx.Linear.BackwardData(v, dx, ddy.View, dw.View, s.N, s.In, s.Out));
            AssertMatches(got, expected, Tolerance.Dot(s.Out), $"linear backward-data {v} {s}");
        });

    [Property(MaxTest = Cases)]
    public Property LinearBackwardWeightAccumulatesAsHost()
        => Prop.ForAll(LinearShapes.ToArbitrary(), Gen.Elements(GemmVersion.V1Naive, GemmVersion.V2Tiled, GemmVersion.V3Tiled128).ToArbitrary(), Bool.ToArbitrary(),
            (s, v, hasBias) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var dy = Random(seed, (long)s.N * s.Out);
            var x = Random(seed + 1, (long)s.N * s.In);
            var dw0 = Random(seed + 2, (long)s.Out * s.In);
            var db0 = Random(seed + 3, s.Out);
            var expectedW = (float[])dw0.Clone();
            var expectedB = (float[])db0.Clone();
            Linear.BackwardWeightHost(expectedW, hasBias ? expectedB : Span<float>.Empty, dy, x, s.N, s.In, s.Out);
            using var ddy = Acc.Allocate1D(dy);
            using var dx = Acc.Allocate1D(x);
            using var dw = Acc.Allocate1D(dw0);
            using var db = Acc.Allocate1D(db0);
            fx.Linear.BackwardWeight(v, dw.View, db.View, ddy.View, dx.View, s.N, s.In, s.Out, hasBias);
            Acc.Synchronize();
            AssertMatches(dw.GetAsArray1D(), expectedW, Tolerance.Dot(s.N), $"linear dW {v} {s}");
            // Without bias db is not touched.
            AssertMatches(db.GetAsArray1D(), expectedB, Tolerance.Exact, $"linear db {v} {s} bias={hasBias}");
        });

    [Fact]
    public void LinearBackwardWeightTwiceDoublesAndBackwardDataOverwrites()
    {
        const int n = 3, inF = 70, outF = 65;
        var dy = Random(1, n * outF);
        var x = Random(2, n * inF);
        var w = Random(3, outF * inF);
        using var ddy = Acc.Allocate1D(dy);
        using var dx = Acc.Allocate1D(x);
        using var dwt = Acc.Allocate1D(w);
        using var dw = Acc.Allocate1D<float>(outF * inF);
        using var db = Acc.Allocate1D<float>(outF);
        dw.MemSetToZero(); db.MemSetToZero();
        fx.Linear.BackwardWeight(dw.View, db.View, ddy.View, dx.View, n, inF, outF);
        Acc.Synchronize();
        var once = dw.GetAsArray1D(); var onceB = db.GetAsArray1D();
        fx.Linear.BackwardWeight(dw.View, db.View, ddy.View, dx.View, n, inF, outF);
        Acc.Synchronize();
        AssertMatches(dw.GetAsArray1D(), once.Select(v => 2 * v).ToArray(), new Tolerance(1e-6, 1e-6), "dW after two calls");
        AssertMatches(db.GetAsArray1D(), onceB.Select(v => 2 * v).ToArray(), new Tolerance(1e-6, 1e-6), "db after two calls");
        Assert.Contains(once, v => Math.Abs(v) > 0.05f);

        var a = Run(Nan(n * inF), o => fx.Linear.BackwardData(o, ddy.View, dwt.View, n, inF, outF));
        var b = Run(Enumerable.Repeat(5f, n * inF).ToArray(), o => fx.Linear.BackwardData(o, ddy.View, dwt.View, n, inF, outF));
        Assert.Equal(a, b);
        Assert.DoesNotContain(a, float.IsNaN);
    }

    [Property(MaxTest = Cases)]
    public Property ReluBackwardMatchesHostExactly()
        => Prop.ForAll(Gen.Choose(1, 5000).ToArbitrary(), Bool.ToArbitrary(), (len, inPlace) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var y = Random(seed, len).Select((v, i) => i % 5 == 0 ? 0f : i % 97 == 3 ? float.NaN : v).ToArray();
            var dy = Random(seed + 1, len);
            var expected = new float[len];
            Activations.ReluBackwardHost(expected, dy, y);
            using var dyv = Acc.Allocate1D(dy);
            using var yv = Acc.Allocate1D(y);
            float[] got = inPlace
                ? Run(dy, d => fx.Act.ReluBackward(d, d, yv.View))
                : Run(Nan(len), d => fx.Act.ReluBackward(d, dyv.View, yv.View));
            AssertMatches(got, expected, Tolerance.Exact, $"relu backward length {len} in-place={inPlace}");
        });

    private static Gen<PoolShape> PoolShapes =>
        from n in Gen.Elements(1, 2)
        from c in Gen.Choose(1, 4)
        from h in Gen.Choose(1, 15)
        from w in Gen.Choose(1, 15)
        from kh in Gen.Choose(1, 4)
        from kw in Gen.Choose(1, 4)
        from sh in Gen.Choose(1, 3)
        from sw in Gen.Choose(1, 3)
        from ph in Gen.Choose(0, 2)
        from pw in Gen.Choose(0, 2)
        let s = new PoolShape(n, c, h, w, kh, kw, sh, sw, Math.Min(ph, kh / 2), Math.Min(pw, kw / 2))
        where s.OutH > 0 && s.OutW > 0
        select s;

    /// <summary>Values on a few levels, so most windows have ties, plus NaNs and -inf: the GPU must route every tie as the host.</summary>
    [Property(MaxTest = Cases)]
    public Property MaxPoolBackwardMatchesHostExactlyWithTies()
        => Prop.ForAll(PoolShapes.ToArbitrary(), Bool.ToArbitrary(), (s, ties) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var x = Random(seed, s.InputLength).Select((v, i) =>
                ties ? (i % 53 == 7 ? float.NaN : i % 41 == 5 ? float.NegativeInfinity : MathF.Round(v * 2)) : v).ToArray();
            var dy = Random(seed + 1, s.OutputLength);
            var expected = new float[s.InputLength];
            Pooling.MaxBackwardHost(expected, dy, x, s);
            using var xv = Acc.Allocate1D(x);
            using var dyv = Acc.Allocate1D(dy);
            var got = Run(Nan(s.InputLength), dx => fx.Pool.MaxBackward(dx, dyv.View, xv.View, s));
            AssertMatches(got, expected, Tolerance.Exact, $"max pool backward {s} ties={ties}");
        });

    private static Gen<(int N, int C, int H, int W, int OH, int OW)> AvgShapes =>
        from n in Gen.Elements(1, 2)
        from c in Gen.Choose(1, 4)
        from h in Gen.Choose(1, 20)
        from w in Gen.Choose(1, 20)
        from oh in Gen.Choose(1, 8)
        from ow in Gen.Choose(1, 8)
        select (n, c, h, w, oh, ow);

    [Property(MaxTest = Cases)]
    public Property AdaptiveAvgPoolBackwardMatchesHost()
        => Prop.ForAll(AvgShapes.ToArbitrary(), s =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var dy = Random(seed, (long)s.N * s.C * s.OH * s.OW);
            var expected = new float[(long)s.N * s.C * s.H * s.W];
            Pooling.AdaptiveAvgBackwardHost(expected, dy, s.N, s.C, s.H, s.W, s.OH, s.OW);
            using var dyv = Acc.Allocate1D(dy);
            var got = Run(Nan(expected.Length), dx => fx.Pool.AdaptiveAvgBackward(dx, dyv.View, s.N, s.C, s.H, s.W, s.OH, s.OW));
            AssertMatches(got, expected, Tolerance.Average, $"adaptive avg backward {s}");
        });

    [Property(MaxTest = Cases)]
    public Property DropoutMasksAreBitIdenticalToHost()
        => Prop.ForAll(Gen.Choose(1, 6000).ToArbitrary(), Gen.Elements(0f, 0.1f, 0.5f, 0.77f, 1f).ToArbitrary(),
            Gen.Choose(0, int.MaxValue).ToArbitrary(), (len, p, seedLow) =>
        {
            ulong seed = (ulong)seedLow * 0x100000001UL;
            var x = Random(Interlocked.Increment(ref _seed), len);
            var expectedY = new float[len];
            Dropout.ForwardHost(expectedY, x, p, seed);
            using var xv = Acc.Allocate1D(x);
            var y = Run(Nan(len), o => fx.Drop.Forward(o, xv.View, p, seed));
            Assert.Equal(expectedY, y);
            var expectedDx = (float[])x.Clone();
            Dropout.BackwardHost(expectedDx, expectedDx, p, seed);
            var dx = Run(x, d => fx.Drop.Backward(d, d, p, seed)); // in place
            Assert.Equal(expectedDx, dx);
            for (int i = 0; i < len; i++) if (x[i] != 0f) Assert.Equal(Dropout.Keep(seed, i, p), y[i] != 0f);
        });

    [Property(MaxTest = Cases)]
    public Property SoftmaxCrossEntropyMatchesHost()
        => Prop.ForAll(Gen.Choose(1, 5).ToArbitrary(), Gen.Choose(1, 1100).ToArbitrary(), (rows, cols) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var logits = Random(seed, (long)rows * cols, 8f);
            var rng = new Random(seed);
            var labels = Enumerable.Range(0, rows).Select(_ => rng.Next(cols)).ToArray();
            var expected = new float[logits.Length];
            double loss = Loss.SoftmaxCrossEntropyHost(expected, logits, labels, rows, cols);
            using var lv = Acc.Allocate1D(logits);
            using var labv = Acc.Allocate1D(labels);
            using var rowLoss = Acc.Allocate1D(Nan(rows));
            var d = Run(Nan(logits.Length), o => fx.CrossEntropy.SoftmaxCrossEntropy(o, rowLoss.View, lv.View, labv.View, rows, cols));
            AssertMatches(d, expected, Tolerance.Softmax, $"softmax cross-entropy dlogits ({rows}, {cols})");
            double mean = rowLoss.GetAsArray1D().Sum(v => (double)v) / rows;
            Assert.True(Math.Abs(mean - loss) <= 1e-5 * (1 + Math.Abs(loss)), $"({rows}, {cols}): GPU loss {mean:R}, host {loss:R}");
        });

    [Fact]
    public void SoftmaxCrossEntropyMarksAnOutOfRangeLabelWithNaN()
    {
        var logits = Random(9, 2 * 4);
        using var lv = Acc.Allocate1D(logits);
        using var labv = Acc.Allocate1D(new[] { 2, 4 });
        using var rowLoss = Acc.Allocate1D<float>(2);
        var d = Run(new float[8], o => fx.CrossEntropy.SoftmaxCrossEntropy(o, rowLoss.View, lv.View, labv.View, 2, 4));
        var rl = rowLoss.GetAsArray1D();
        Assert.False(float.IsNaN(rl[0]));
        Assert.True(rl[0] > 0);
        Assert.True(float.IsNaN(rl[1]));
        Assert.All(d.Take(4), v => Assert.False(float.IsNaN(v)));
        Assert.All(d.Skip(4), v => Assert.True(float.IsNaN(v)));
    }

    private static Gen<SgdArgs> SgdCases =>
        from mom in Gen.Elements(0f, 0.9f)
        from nest in Bool
        from wd in Gen.Elements(0f, 5e-4f, 0.1f)
        select new SgdArgs(0.05f, mom, wd, nest && mom != 0f);

    [Property(MaxTest = Cases)]
    public Property SgdStepsMatchHost()
        => Prop.ForAll(Gen.Choose(1, 5000).ToArbitrary(), SgdCases.ToArbitrary(), (len, a) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var p = Random(seed, len);
            var buf = a.Momentum != 0f ? new float[len] : Array.Empty<float>();
            using var pv = Acc.Allocate1D(p);
            using var bv = Acc.Allocate1D<float>(Math.Max(1, buf.Length));
            bv.MemSetToZero();
            for (int step = 0; step < 3; step++)
            {
                var g = Random(seed + 100 + step, len);
                Optimizers.SgdStepHost(p, g, buf, a);
                using var gv = Acc.Allocate1D(g);
                fx.Optim.SgdStep(pv.View, gv.View, a.Momentum != 0f ? bv.View : ArrayView<float>.Empty, a);
            }
            Acc.Synchronize();
            AssertMatches(pv.GetAsArray1D(), p, StepTolerance, $"sgd param {a} length {len}");
            if (a.Momentum != 0f) AssertMatches(bv.GetAsArray1D(), buf, StepTolerance, $"sgd momentum buffer {a} length {len}");
        });

    [Property(MaxTest = Cases)]
    public Property AdamWStepsMatchHost()
        => Prop.ForAll(Gen.Choose(1, 5000).ToArbitrary(), Gen.Elements(0f, 0.01f, 0.5f).ToArbitrary(), (len, wd) =>
        {
            int seed = Interlocked.Increment(ref _seed);
            var p = Random(seed, len);
            var m = new float[len];
            var v = new float[len];
            using var pv = Acc.Allocate1D(p);
            using var mv = Acc.Allocate1D<float>(len);
            using var vv = Acc.Allocate1D<float>(len);
            mv.MemSetToZero(); vv.MemSetToZero();
            for (int t = 1; t <= 3; t++)
            {
                var a = new AdamWArgs(1e-3f, WeightDecay: wd, Step: t);
                var g = Random(seed + 100 + t, len);
                Optimizers.AdamWStepHost(p, g, m, v, a);
                using var gv = Acc.Allocate1D(g);
                fx.Optim.AdamWStep(pv.View, gv.View, mv.View, vv.View, a);
            }
            Acc.Synchronize();
            AssertMatches(pv.GetAsArray1D(), p, StepTolerance, $"adamw param wd={wd} length {len}");
            AssertMatches(mv.GetAsArray1D(), m, StepTolerance, $"adamw m wd={wd} length {len}");
            AssertMatches(vv.GetAsArray1D(), v, StepTolerance, $"adamw v wd={wd} length {len}");
        });

    [Fact]
    public void LaunchersRejectWrongLengthsNamingTheTensor()
    {
        using var a = Acc.Allocate1D<float>(10);
        using var b = Acc.Allocate1D<float>(9);
        var e = Assert.Throws<ArgumentException>(() => fx.Act.ReluBackward(a.View, b.View, a.View));
        Assert.StartsWith("dy: buffer has 9 elements, expected 10", e.Message);
        e = Assert.Throws<ArgumentException>(() => fx.Optim.AdamWStep(a.View, a.View, a.View, b.View, new AdamWArgs(1e-3f)));
        Assert.StartsWith("v: buffer has 9 elements, expected 10", e.Message);
        e = Assert.Throws<ArgumentException>(() => fx.Optim.SgdStep(a.View, a.View, ArrayView<float>.Empty, new SgdArgs(0.1f, 0.9f)));
        Assert.StartsWith("momentumBuf: buffer has 0 elements, expected 10", e.Message);
        e = Assert.Throws<ArgumentException>(() => fx.Linear.BackwardWeight(a.View, b.View, a.View, a.View, 2, 5, 5));
        Assert.StartsWith("dw: buffer has 10 elements, expected 25", e.Message);
    }
}

/// <summary>GpuBackwardOpsTests on ILGPU's CPU accelerator simulating 256-thread groups.</summary>
public sealed class GpuBackwardOpsTestsOnCpuSimulator(CpuSimulatorFixture fx) : GpuBackwardOpsTests(fx), IClassFixture<CpuSimulatorFixture>;

/// <summary>GpuBackwardOpsTests on the first OpenCL device ILGPU runs on (PoCL in CI).</summary>
[RequiresBackend("opencl")]
public sealed class GpuBackwardOpsTestsOnOpenCl(OpenClFixture fx) : GpuBackwardOpsTests(fx), IClassFixture<OpenClFixture>;
