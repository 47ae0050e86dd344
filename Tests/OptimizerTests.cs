using Tp7.Engine.Kernels;

namespace Tp7.Tests;

/// <summary>
/// SGD and AdamW steps against PyTorch 1.13's formulas written out in double in this file, for a few steps
/// (the float step agrees to 1e-6 + 1e-5·|ref| per element over 5 steps); the parallel SIMD versions against the
/// scalar V1 bit for bit; the learning-rate schedules against their closed forms.
/// </summary>
public class OptimizerTests
{
    const double Atol = 1e-6, Rtol = 1e-5;

    static float[] Random(int seed, int n, float scale = 1f)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => scale * (2f * rng.NextSingle() - 1f)).ToArray();
    }

    static void AssertClose(double[] expected, float[] actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= Atol + Rtol * Math.Abs(expected[i]),
                $"{what}: [{i}] expected {expected[i]:R}, got {actual[i]:R}");
    }

    public static TheoryData<float, float, bool> SgdCases => new()
    {
        { 0f, 0f, false },      // plain
        { 0.9f, 0f, false },    // momentum
        { 0.9f, 0f, true },     // nesterov
        { 0f, 1e-2f, false },   // weight decay
        { 0.8f, 5e-2f, true },  // everything
    };

    [Theory]
    [MemberData(nameof(SgdCases))]
    public void SgdFollowsTorchFormulasForFiveSteps(float momentum, float wd, bool nesterov)
    {
        const int n = 37;
        const float lr = 0.1f;
        var a = new SgdArgs(lr, momentum, wd, nesterov);
        var p = Random(1, n);
        var buf = momentum != 0f ? new float[n] : Array.Empty<float>();
        var pd = p.Select(v => (double)v).ToArray();
        var bd = new double[n];
        for (int step = 1; step <= 5; step++)
        {
            var g = Random(10 + step, n);
            Optimizers.SgdStepHost(p, g, buf, a);
            for (int i = 0; i < n; i++)
            {
                double d = g[i] + (double)wd * pd[i];
                if (momentum != 0f)
                {
                    bd[i] = step == 1 ? d : momentum * bd[i] + d;   // torch clones d on the first step
                    d = nesterov ? d + momentum * bd[i] : bd[i];
                }
                pd[i] -= lr * d;
            }
            AssertClose(pd, p, $"sgd {a} step {step} param");
            if (momentum != 0f) AssertClose(bd, buf, $"sgd {a} step {step} momentum buffer");
        }
        // Five steps of about lr·|g| each moved every parameter.
        Assert.True(p.Zip(Random(1, n)).Max(t => Math.Abs(t.First - t.Second)) > 0.05);
    }

    [Fact]
    public void SgdFirstMomentumStepIsTheClonedGradientBitForBit()
    {
        var p = Random(2, 20);
        var g = Random(3, 20);
        var buf = new float[20];
        var a = new SgdArgs(0.1f, 0.9f, 1e-3f);
        var expected = p.Zip(g, (pi, gi) => gi + 1e-3f * pi).ToArray();
        Optimizers.SgdStepHost(p, g, buf, a);
        Assert.Equal(expected, buf);
    }

    static readonly (float Lr, float B1, float B2, float Eps, float Wd)[] AdamCases =
    [
        (1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f),
        (1e-2f, 0.8f, 0.99f, 1e-6f, 0f),
        (3e-4f, 0.9f, 0.999f, 1e-8f, 0.5f),
    ];

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void AdamWFollowsTorchFormulasWithBiasCorrectionForFiveSteps(int which)
    {
        var (lr, b1, b2, eps, wd) = AdamCases[which];
        const int n = 41;
        var p = Random(4, n);
        var m = new float[n];
        var v = new float[n];
        var pd = p.Select(x => (double)x).ToArray();
        var md = new double[n];
        var vd = new double[n];
        // The numbers as typed in python, not their float roundings.
        double lrd = double.Parse(lr.ToString("R")), b1d = double.Parse(b1.ToString("R")), b2d = double.Parse(b2.ToString("R"));
        double epsd = eps, wdd = double.Parse(wd.ToString("R"));
        for (int t = 1; t <= 5; t++)
        {
            var g = Random(20 + t, n, 0.5f);
            Optimizers.AdamWStepHost(p, g, m, v, new AdamWArgs(lr, b1, b2, eps, wd, t));
            double bc1 = 1 - Math.Pow(b1d, t), bc2 = 1 - Math.Pow(b2d, t);
            for (int i = 0; i < n; i++)
            {
                pd[i] *= 1 - lrd * wdd;
                md[i] = b1d * md[i] + (1 - b1d) * g[i];
                vd[i] = b2d * vd[i] + (1 - b2d) * g[i] * g[i];
                double denom = Math.Sqrt(vd[i]) / Math.Sqrt(bc2) + epsd;
                pd[i] -= lrd / bc1 * md[i] / denom;
            }
            AssertClose(pd, p, $"adamw case {which} step {t} param");
            AssertClose(md, m, $"adamw case {which} step {t} m");
            AssertClose(vd, v, $"adamw case {which} step {t} v");
        }
    }

    [Fact]
    public void AdamWFirstStepMovesEachParameterByLrTimesSignOfGradient()
    {
        // With bias correction, step 1 is p -= lr·g/(|g| + eps): a move of lr whatever |g| is. Without it the
        // move would be lr·(1-b1)/sqrt(1-b2) ≈ 3.16·lr.
        var p = new float[] { 0.5f, -0.25f, 2f, 0f };
        var g = new float[] { 0.3f, -2f, 1e-3f, 5f };
        var before = (float[])p.Clone();
        Optimizers.AdamWStepHost(p, g, new float[4], new float[4], new AdamWArgs(0.01f, WeightDecay: 0f, Step: 1));
        for (int i = 0; i < 4; i++) Assert.Equal(before[i] - 0.01 * Math.Sign(g[i]), p[i], 5);
    }

    [Fact]
    public void SimdStepsMatchTheNaiveSpecificationBitForBit()
    {
        const int n = 200_007; // parallel chunks and a scalar tail
        var g = Random(5, n);
        foreach (var a in new[] { new SgdArgs(0.1f), new SgdArgs(0.1f, 0.9f, 1e-4f), new SgdArgs(0.05f, 0.9f, 0.01f, true) })
        {
            var p1 = Random(6, n); var p2 = (float[])p1.Clone();
            var b1 = a.Momentum != 0 ? Random(7, n) : []; var b2 = (float[])b1.Clone();
            Optimizers.SgdStepHost_V1Naive(p1, g, b1, a);
            Optimizers.SgdStepHost_V2Simd(p2, g, b2, a);
            Assert.Equal(p1, p2);
            Assert.Equal(b1, b2);
        }
        for (int t = 1; t <= 2; t++)
        {
            var a = new AdamWArgs(1e-3f, Step: t);
            var p1 = Random(8, n); var p2 = (float[])p1.Clone();
            var m1 = Random(9, n, 0.1f); var m2 = (float[])m1.Clone();
            var v1 = Random(10, n, 0.1f).Select(MathF.Abs).ToArray(); var v2 = (float[])v1.Clone();
            Optimizers.AdamWStepHost_V1Naive(p1, g, m1, v1, a);
            Optimizers.AdamWStepHost_V2Simd(p2, g, m2, v2, a);
            Assert.Equal(p1, p2);
            Assert.Equal(m1, m2);
            Assert.Equal(v1, v2);
        }
    }

    [Fact]
    public void StepsRejectWrongLengthsAndBadArguments()
    {
        var e = Assert.Throws<ArgumentException>(() => Optimizers.SgdStepHost(new float[5], new float[4], [], new SgdArgs(0.1f)));
        Assert.StartsWith("grad: buffer has 4 elements, expected 5", e.Message);
        e = Assert.Throws<ArgumentException>(() => Optimizers.SgdStepHost(new float[5], new float[5], [], new SgdArgs(0.1f, 0.9f)));
        Assert.StartsWith("momentumBuf: buffer has 0 elements, expected 5", e.Message);
        e = Assert.Throws<ArgumentException>(() => Optimizers.SgdStepHost(new float[5], new float[5], new float[5], new SgdArgs(0.1f, Nesterov: true)));
        Assert.Contains("Nesterov", e.Message);
        e = Assert.Throws<ArgumentException>(() => Optimizers.AdamWStepHost(new float[5], new float[5], new float[6], new float[5], new AdamWArgs(0.1f)));
        Assert.StartsWith("m: buffer has 6 elements, expected 5", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Optimizers.AdamWStepHost(new float[5], new float[5], new float[5], new float[5], new AdamWArgs(0.1f, Step: 0)));
    }

    [Fact]
    public void StepLrDecaysByGammaEveryStepSizeEpochs()
    {
        Assert.Equal(0.1, LrSchedule.Step(0.1, 0, 30, 0.1));
        Assert.Equal(0.1, LrSchedule.Step(0.1, 29, 30, 0.1));
        Assert.Equal(0.1 * 0.1, LrSchedule.Step(0.1, 30, 30, 0.1), 15);
        Assert.Equal(0.1 * 0.1 * 0.1, LrSchedule.Step(0.1, 89, 30, 0.1), 15);
        Assert.Equal(0.05 * 0.5 * 0.5, LrSchedule.Step(0.05, 5, 2, 0.5), 15);
        Assert.Throws<ArgumentOutOfRangeException>(() => LrSchedule.Step(0.1, 1, 0, 0.1));
    }

    [Fact]
    public void CosineAnnealingFollowsItsClosedForm()
    {
        Assert.Equal(0.1, LrSchedule.Cosine(0.1, 0, 10), 15);
        Assert.Equal(0.001, LrSchedule.Cosine(0.1, 10, 10, 0.001), 15);
        Assert.Equal((0.1 + 0.001) / 2, LrSchedule.Cosine(0.1, 5, 10, 0.001), 15);
        // Epoch 2 of 8: (1 + cos(pi/4))/2 of the way from min to base.
        Assert.Equal(0.01 + (0.2 - 0.01) * (1 + Math.Sqrt(0.5)) / 2, LrSchedule.Cosine(0.2, 2, 8, 0.01), 14);
        // Past T the closed form climbs back up, as torch's does.
        Assert.Equal(LrSchedule.Cosine(0.1, 8, 10), LrSchedule.Cosine(0.1, 12, 10), 15);
        Assert.Throws<ArgumentOutOfRangeException>(() => LrSchedule.Cosine(0.1, 1, 0));
    }

    /// <summary>
    /// ZeroGrad's clear on the host (parallel streaming stores): zeroes exactly the slice, from an address that is
    /// not 32-byte aligned, over several parallel chunks and a tail, and leaves its neighbours alone.
    /// </summary>
    [Fact]
    public void HostDeviceClearZeroesExactlyTheSliceOfALargeGradientBlock()
    {
        using var dev = new Tp7.Engine.Devices.HostDevice();
        const int n = (3 << 20) + 101, offset = 5, length = (5 << 19) + 77;
        using var block = dev.Allocate(n);
        var ones = Enumerable.Repeat(1f, n).ToArray();
        dev.Upload(block, ones);
        dev.Clear(block.Slice(offset, length));
        var back = new float[n];
        dev.Download(block, back);
        for (int i = 0; i < n; i++)
            Assert.True(back[i] == (i >= offset && i < offset + length ? 0f : 1f), $"[{i}] = {back[i]} after clearing [{offset}, {offset + length})");
        dev.Clear(block.Slice(3, 10));                   // a small slice: the serial path
        dev.Download(block, back);
        Assert.Equal(new[] { 1f, 1f, 1f, 0f, 0f }, back[..5]);
        Assert.Equal(0f, back[12]);
    }
}
