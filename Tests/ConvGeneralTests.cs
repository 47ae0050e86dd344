using ILGPU.Runtime;
using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using Tp7.Engine.Kernels;
using NetGraph = Tp7.Engine.Graph.Graph;

using Tp7.Tests.Infrastructure;

namespace Tp7.Tests;

/// <summary>
/// The convolutions ONNX models bring beyond VGG's: asymmetric pads (ResNet's stem as exported with pads
/// [3, 3, 2, 2]), dilation, groups and depthwise (MobileNetV2). Every host version that accepts a shape and every ILGPU
/// version on every accelerator present (ILGPU's CPU accelerator, OpenCL) against a double-precision direct-loop reference written here from the ONNX Conv
/// definition, with |Δ| ≤ 1e-4·max(1, max |ref|). Output sizes are checked against the reference's own formula.
/// </summary>
public abstract class ConvGeneralTests(AcceleratorFixture fx)
{
    /// <summary>y[n, k, oy, ox] = b[k] + Σ over the group's channels and taps of x · w, 0 outside the input (ONNX Conv).</summary>
    internal static double[] Reference(float[] x, float[] w, float[] b, int n, int c, int h, int wd, int k, int r, int sk,
        int sh, int sw, int pt, int pl, int pb, int pr, int dh, int dw, int groups, bool relu, out int oh, out int ow)
    {
        oh = (h + pt + pb - (dh * (r - 1) + 1)) / sh + 1;
        ow = (wd + pl + pr - (dw * (sk - 1) + 1)) / sw + 1;
        int cg = c / groups, kg = k / groups;
        var y = new double[n * k * oh * ow];
        for (int i = 0; i < n; i++)
            for (int o = 0; o < k; o++)
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++)
                    {
                        double acc = b[o];
                        for (int ci = 0; ci < cg; ci++)
                        {
                            int channel = o / kg * cg + ci;
                            for (int a = 0; a < r; a++)
                                for (int q = 0; q < sk; q++)
                                {
                                    int iy = oy * sh - pt + a * dh, ix = ox * sw - pl + q * dw;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                    acc += (double)x[((i * c + channel) * h + iy) * wd + ix] * w[((o * cg + ci) * r + a) * sk + q];
                                }
                        }
                        y[((i * k + o) * oh + oy) * ow + ox] = relu ? Math.Max(0, acc) : acc;
                    }
        return y;
    }

    static double[] Reference(float[] x, float[] w, float[] b, ConvShape s, bool relu)
    {
        var y = Reference(x, w, b, s.N, s.C, s.H, s.W, s.K, s.R, s.S, s.StrideH, s.StrideW, s.PadH, s.PadW, s.PadEndH, s.PadEndW,
            s.DilationH, s.DilationW, s.Groups, relu, out int oh, out int ow);
        Assert.Equal((oh, ow), (s.OutH, s.OutW));
        return y;
    }

    internal static float[] Random(long length, int seed, double scale = 1)
    {
        var rng = new Random(seed);
        var v = new float[length];
        for (long i = 0; i < length; i++) v[i] = (float)(scale * (rng.NextDouble() * 2 - 1));
        return v;
    }

    internal static void AssertClose(double[] want, ReadOnlySpan<float> got, string what)
    {
        Assert.Equal(want.Length, got.Length);
        double max = 1, worst = 0;
        int at = 0;
        foreach (var v in want) max = Math.Max(max, Math.Abs(v));
        for (int i = 0; i < want.Length; i++)
        {
            double d = Math.Abs(got[i] - want[i]);
            if (d > worst) { worst = d; at = i; }
        }
        Assert.True(worst <= 1e-4 * max, $"{what}: worst index {at}: got {got[at]}, want {want[at]} (|Δ| {worst:g3}, max |ref| {max:g3})");
    }

    delegate void HostForward(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, ConvShape s, bool relu);

    static readonly (string Name, HostForward Run, Func<ConvShape, bool> Accepts)[] HostVersions =
    [
        ("ForwardHost", Conv2d.ForwardHost, _ => true),
        ("V1Naive", Conv2d.ForwardHost_V1Naive, s => s.IsDense),
        ("V2Im2colGemm", Conv2d.ForwardHost_V2Im2colGemm, s => s.IsDense),
        ("V5BatchedGemm", Conv2d.ForwardHost_V5BatchedGemm, s => s.IsDense),
        ("V3Winograd", Conv2d.ForwardHost_V3Winograd, IsWinogradShape),
        ("V4Winograd4x4", Conv2d.ForwardHost_V4Winograd4x4, IsWinogradShape),
        ("GroupedDirect", Conv2d.ForwardHost_GroupedDirect, _ => true),
        ("Depthwise", Conv2d.ForwardHost_Depthwise, Conv2d.IsDepthwise),
        ("GroupsOverDense", Conv2d.ForwardHost_GroupsOverDense, s => s.DilationH == 1 && s.DilationW == 1),
    ];

    static bool IsWinogradShape(ConvShape s)
        => s.IsDense && s.R == 3 && s.S == 3 && s.StrideH == 1 && s.StrideW == 1 && s.PadH == 1 && s.PadW == 1 && s.PadEndH == 1 && s.PadEndW == 1;

    /// <summary>Every accepting host version and every accepting ILGPU version against the reference; returns how many ran.</summary>
    int CheckAllVersions(ConvShape s, bool relu, int seed)
    {
        var x = Random(s.InputLength, seed);
        var w = Random(s.WeightLength, seed + 1, 0.5);
        var b = Random(s.K, seed + 2);
        var want = Reference(x, w, b, s, relu);
        int ran = 0;
        foreach (var (name, run, accepts) in HostVersions)
        {
            var y = new float[s.OutputLength];
            if (!accepts(s))
            {
                Assert.ThrowsAny<ArgumentException>(() => run(y, x, w, b, s, relu));
                continue;
            }
            run(y, x, w, b, s, relu);
            AssertClose(want, y, $"host {name} on {s}");
            ran++;
        }
        foreach (var version in Enum.GetValues<Conv2dVersion>())
        {
            using var xb = fx.Accelerator.Allocate1D(x);
            using var wb = fx.Accelerator.Allocate1D(w);
            using var bb = fx.Accelerator.Allocate1D(b);
            using var yb = fx.Accelerator.Allocate1D<float>(s.OutputLength);
            if (!s.IsDense && version != Conv2dVersion.V3GroupedDirect)
            {
                Assert.ThrowsAny<ArgumentException>(() => fx.Conv.Forward(version, yb.View, xb.View, wb.View, bb.View, s, relu));
                continue;
            }
            if (Precisions.Of(version) != Precision.Fp32)
            {
                // Tensor-core versions run on CUDA (cc >= 8.0) only: refused here, naming why. Their data flow is checked on
                // the CPU accelerator with mma emulated (MmaPrecisionTests) and on a GPU by `tp7 selftest`.
                var refused = Assert.Throws<NotSupportedException>(() => fx.Conv.Forward(version, yb.View, xb.View, wb.View, bb.View, s, relu));
                Assert.Contains("compute capability 8.0", refused.Message);
                continue;
            }
            fx.Conv.Forward(version, yb.View, xb.View, wb.View, bb.View, s, relu);
            fx.Accelerator.Synchronize();
            AssertClose(want, yb.GetAsArray1D(), $"ILGPU {version} on {s}");
            ran++;
        }
        {
            using var xb = fx.Accelerator.Allocate1D(x);
            using var wb = fx.Accelerator.Allocate1D(w);
            using var bb = fx.Accelerator.Allocate1D(b);
            using var yb = fx.Accelerator.Allocate1D<float>(s.OutputLength);
            fx.Conv.Forward(yb.View, xb.View, wb.View, bb.View, s, relu);
            fx.Accelerator.Synchronize();
            AssertClose(want, yb.GetAsArray1D(), $"ILGPU default on {s}");
        }
        return ran;
    }

    [Fact]
    public void ResNetStemWithAsymmetricPadsMatchesReferenceOnEveryVersion()
    {
        // 7x7 stride 2 pads [3, 3, 2, 2]: one row and column fewer at the end than a symmetric pad 3 would give.
        var s = new ConvShape(2, 3, 20, 18, 8, 7, 7, 2, 2, 3, 3, PadBottom: 2, PadRight: 2);
        Assert.Equal((10, 9), (s.OutH, s.OutW));
        Assert.Equal(10, CheckAllVersions(s, relu: true, seed: 10)); // ForwardHost, V1, V2, V5, GroupedDirect, GroupsOverDense; ILGPU V1, V2, V3, V4
    }

    [Fact]
    public void AsymmetricPadsAreNeverRoutedToWinograd()
    {
        // C = 64 3x3 stride 1: ForwardHost's Winograd rule applies to the symmetric shape, not these.
        foreach (var (pb, pr) in new[] { (0, 0), (2, 1), (1, 0) })
        {
            var s = new ConvShape(1, 64, 9, 7, 8, 3, 3, 1, 1, 1, 1, PadBottom: pb, PadRight: pr);
            Assert.Equal(10, CheckAllVersions(s, relu: false, seed: 20 + pb)); // no Winograd version
        }
        // The explicit symmetric four-pad form is the old shape, Winograd versions included.
        var sym = new ConvShape(2, 64, 9, 7, 8, 3, 3, 1, 1, 1, 1, PadBottom: 1, PadRight: 1);
        Assert.Equal(12, CheckAllVersions(sym, relu: false, seed: 30)); // V3 and V4 too
    }

    [Fact]
    public void PointwiseWithEndPadsDoesNotReadTheImageAsGemmInput()
    {
        // 1x1 stride 1 with end pads: the output is larger than the image, so V2's direct (image as B) path must not run.
        var s = new ConvShape(2, 5, 6, 7, 4, 1, 1, 1, 1, 0, 0, PadBottom: 1, PadRight: 2);
        Assert.Equal((7, 9), (s.OutH, s.OutW));
        CheckAllVersions(s, relu: false, seed: 40);
    }

    [Fact]
    public void DilationTwoMatchesReference()
    {
        CheckAllVersions(new ConvShape(2, 5, 13, 11, 6, 3, 3, 1, 1, 2, 2, DilationH: 2, DilationW: 2), relu: false, seed: 50);
        CheckAllVersions(new ConvShape(1, 4, 15, 12, 3, 3, 2, 2, 1, 1, 0, PadBottom: 2, PadRight: 1, DilationH: 2, DilationW: 3), relu: true, seed: 51);
    }

    [Fact]
    public void GroupsTwoAndFourMatchReference()
    {
        // Groups 2 of 8 channels run the dense path per (image, group); groups 4 of 4 channels the direct loops.
        CheckAllVersions(new ConvShape(2, 16, 11, 9, 10, 3, 3, 2, 2, 1, 1, PadBottom: 0, PadRight: 1, Groups: 2), relu: false, seed: 60);
        CheckAllVersions(new ConvShape(2, 16, 10, 9, 12, 3, 3, 1, 1, 1, 1, Groups: 4), relu: true, seed: 61);
        CheckAllVersions(new ConvShape(1, 8, 9, 10, 4, 3, 3, 1, 2, 1, 1, DilationH: 2, DilationW: 1, Groups: 4), relu: false, seed: 62);
        // C = 64 in groups of 32: each group's 3x3 pad-1 shape is Winograd's.
        CheckAllVersions(new ConvShape(1, 64, 8, 9, 16, 3, 3, 1, 1, 1, 1, Groups: 2), relu: false, seed: 63);
    }

    [Fact]
    public void DepthwiseMobileNetShapesMatchReference()
    {
        // MobileNetV2's depthwise 3x3: stride 1 pad 1 and stride 2 pad 1 (small planes, widths past a vector).
        CheckAllVersions(new ConvShape(2, 32, 14, 19, 32, 3, 3, 1, 1, 1, 1, Groups: 32), relu: true, seed: 70);
        CheckAllVersions(new ConvShape(1, 24, 15, 21, 24, 3, 3, 2, 2, 1, 1, Groups: 24), relu: false, seed: 71);
        // TensorFlow-exported stride 2 with pads [0, 0, 1, 1], a 5x5 and a dilated one.
        CheckAllVersions(new ConvShape(1, 16, 12, 13, 16, 3, 3, 2, 2, 0, 0, PadBottom: 1, PadRight: 1, Groups: 16), relu: false, seed: 72);
        CheckAllVersions(new ConvShape(2, 8, 11, 20, 8, 5, 5, 1, 1, 2, 2, Groups: 8), relu: false, seed: 73);
        CheckAllVersions(new ConvShape(1, 6, 12, 23, 6, 3, 3, 1, 1, 2, 2, DilationH: 2, DilationW: 2, Groups: 6), relu: true, seed: 74);
        // Channel multiplier 2 (K = 2C) is grouped, not depthwise.
        CheckAllVersions(new ConvShape(1, 6, 9, 9, 12, 3, 3, 1, 1, 1, 1, Groups: 6), relu: false, seed: 75);
    }

    [Fact]
    public void ShapeValidatesGroupsDilationAndCountsGroupedWork()
    {
        var s = new ConvShape(2, 16, 10, 10, 12, 3, 3, 1, 1, 1, 1, Groups: 4);
        Assert.Equal(12L * 4 * 9, s.WeightLength);
        Assert.Equal(2.0 * 2 * 12 * 100 * 4 * 9, s.ForwardFlops);
        Assert.False(s.IsDense);
        Assert.True(new ConvShape(1, 3, 5, 5, 2, 3, 3, PadBottom: 2).IsDense);
        Assert.Throws<ArgumentException>(() => new ConvShape(1, 6, 8, 8, 4, 3, 3, Groups: 4).Validate());  // C % G
        Assert.Throws<ArgumentException>(() => new ConvShape(1, 8, 8, 8, 6, 3, 3, Groups: 4).Validate());  // K % G
        Assert.Throws<ArgumentException>(() => new ConvShape(1, 4, 8, 8, 4, 3, 3, DilationH: 0).Validate());
        Assert.Throws<ArgumentException>(() => new ConvShape(1, 4, 4, 8, 4, 3, 3, DilationH: 2).Validate()); // extent 5 > 4
        Assert.Throws<ArgumentException>(() => new ConvShape(1, 4, 8, 8, 4, 3, 3, PadH: -1).Validate());
    }

    [Fact]
    public void BackwardRefusesGroupedAndDilatedShapes()
    {
        var s = new ConvShape(1, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, Groups: 2);
        var e = Assert.Throws<NotSupportedException>(() => Conv2d.BackwardDataHost(new float[s.InputLength], new float[s.OutputLength], new float[s.WeightLength], s));
        Assert.Contains("dense", e.Message);
        Assert.Throws<NotSupportedException>(() => Conv2d.BackwardWeightHost(new float[s.WeightLength], new float[s.K], new float[s.OutputLength], new float[s.InputLength], s));
        using var dx = fx.Accelerator.Allocate1D<float>(s.InputLength);
        using var dy = fx.Accelerator.Allocate1D<float>(s.OutputLength);
        using var w = fx.Accelerator.Allocate1D<float>(s.WeightLength);
        Assert.Throws<NotSupportedException>(() => fx.Conv.BackwardData(dx.View, dy.View, w.View, s));
    }

    /// <summary>
    /// Dense backward with asymmetric pads: the fast host versions (flipped forward with swapped begin/end pads, col2im,
    /// the GEMM weight gradient with and without the image-as-B path) and the ILGPU ones against the V1 loops, which
    /// only read OutH/OutW and bounds.
    /// </summary>
    [Fact, UsesAtomics]
    public void DenseBackwardWithAsymmetricPadsMatchesNaive()
    {
        var shapes = new[]
        {
            new ConvShape(2, 3, 9, 8, 5, 3, 3, 1, 1, 1, 0, PadBottom: 0, PadRight: 2),
            new ConvShape(1, 4, 10, 9, 6, 7, 7, 2, 2, 3, 3, PadBottom: 2, PadRight: 2),
            new ConvShape(2, 5, 6, 7, 4, 1, 1, 1, 1, 0, 0, PadBottom: 1, PadRight: 2),
        };
        int seed = 80;
        foreach (var s in shapes)
        {
            var x = Random(s.InputLength, seed++);
            var w = Random(s.WeightLength, seed++, 0.5);
            var dy = Random(s.OutputLength, seed++);
            var dxRef = new float[s.InputLength];
            Conv2d.BackwardDataHost_V1Naive(dxRef, dy, w, s);
            var dxWant = dxRef.Select(v => (double)v).ToArray();
            var dx = new float[s.InputLength];
            Conv2d.BackwardDataHost(dx, dy, w, s);
            AssertClose(dxWant, dx, $"dx host on {s}");
            Conv2d.BackwardDataHost_V2Col2im(dx, dy, w, s);
            AssertClose(dxWant, dx, $"dx V2Col2im on {s}");

            var dwRef = new float[s.WeightLength];
            var dbRef = new float[s.K];
            Conv2d.BackwardWeightHost_V1Naive(dwRef, dbRef, dy, x, s);
            var dw = new float[s.WeightLength];
            var db = new float[s.K];
            Conv2d.BackwardWeightHost(dw, db, dy, x, s);
            AssertClose(dwRef.Select(v => (double)v).ToArray(), dw, $"dw host on {s}");
            AssertClose(dbRef.Select(v => (double)v).ToArray(), db, $"db host on {s}");

            foreach (var version in Enum.GetValues<Conv2dBackwardVersion>())
            {
                using var dyb = fx.Accelerator.Allocate1D(dy);
                using var wb = fx.Accelerator.Allocate1D(w);
                using var xb = fx.Accelerator.Allocate1D(x);
                using var dxb = fx.Accelerator.Allocate1D<float>(s.InputLength);
                using var dwb = fx.Accelerator.Allocate1D(new float[s.WeightLength]);
                using var dbb = fx.Accelerator.Allocate1D(new float[s.K]);
                fx.Conv.BackwardData(version, dxb.View, dyb.View, wb.View, s);
                fx.Conv.BackwardWeight(version, dwb.View, dbb.View, dyb.View, xb.View, s);
                fx.Accelerator.Synchronize();
                AssertClose(dxWant, dxb.GetAsArray1D(), $"dx ILGPU {version} on {s}");
                AssertClose(dwRef.Select(v => (double)v).ToArray(), dwb.GetAsArray1D(), $"dw ILGPU {version} on {s}");
            }
        }
        // V1's dx itself against the definition: dx = Σ over windows of dy·w, computed here from the forward loops.
        var t = shapes[0];
        var tw = Random(t.WeightLength, 1, 0.5);
        var tdy = Random(t.OutputLength, 2);
        var want = new double[t.InputLength];
        for (int n = 0; n < t.N; n++)
            for (int k = 0; k < t.K; k++)
                for (int oy = 0; oy < t.OutH; oy++)
                    for (int ox = 0; ox < t.OutW; ox++)
                        for (int c = 0; c < t.C; c++)
                            for (int r = 0; r < t.R; r++)
                                for (int q = 0; q < t.S; q++)
                                {
                                    int iy = oy - t.PadH + r, ix = ox - t.PadW + q;
                                    if (iy < 0 || iy >= t.H || ix < 0 || ix >= t.W) continue;
                                    want[((n * t.C + c) * t.H + iy) * t.W + ix] +=
                                        (double)tdy[((n * t.K + k) * t.OutH + oy) * t.OutW + ox] * tw[((k * t.C + c) * t.R + r) * t.S + q];
                                }
        var got = new float[t.InputLength];
        Conv2d.BackwardDataHost(got, tdy, tw, t);
        AssertClose(want, got, $"dx host against the definition on {t}");
    }

    // ===== Graph level: the Conv node's attributes as the ONNX importer writes them =====

    static NetGraph OneConv(Shape x, Shape w, Attributes attributes)
    {
        var g = new NetGraph();
        g.Inputs["x"] = x;
        g.Parameters.Add(("w", w));
        g.Parameters.Add(("b", new Shape(w[0])));
        g.Nodes.Add(new Node("conv", "Conv", ["x", "w", "b"], ["y"], attributes));
        g.Output = "y";
        return g;
    }

    [Fact]
    public void ConvNodeWithGroupDilationAndFourPadsRunsOnHostAndIlgpu()
    {
        const int n = 2, c = 6, h = 11, wd = 10, k = 4, groups = 2;
        var attributes = new Attributes().Set("strides", new[] { 2, 1 }).Set("pads", new[] { 1, 2, 0, 1 })
            .Set("dilations", new[] { 2, 1 }).Set("group", groups);
        var x = Random(n * c * h * wd, 90);
        var w = Random(k * (c / groups) * 3 * 3, 91, 0.5);
        var b = Random(k, 92);
        var want = Reference(x, w, b, n, c, h, wd, k, 3, 3, 2, 1, 1, 2, 0, 1, 2, 1, groups, relu: false, out int oh, out int ow);
        var g = OneConv(new Shape(1, c, h, wd), new Shape(k, c / groups, 3, 3), attributes);
        Assert.Equal(new Shape(n, k, oh, ow), OpRegistry.Get("Conv").InferShapes(g.Nodes[0], [new Shape(n, c, h, wd), new Shape(k, c / groups, 3, 3), new Shape(k)])[0]);
        foreach (var device in new ComputeDevice[] { new HostDevice(), fx.OpenDevice() })
        {
            using var _ = device;
            using var net = new Network(device, g);
            net.Parameters.Write("w", w);
            net.Parameters.Write("b", b);
            AssertClose(want, net.Forward(x, new Shape(n, c, h, wd), ["y"])["y"], $"Conv node on {device.Name}");
        }
    }

    [Fact]
    public void ConvNodeRefusesMismatchedGroupsAndTrainingThroughGroups()
    {
        var op = OpRegistry.Get("Conv");
        var node = new Node("conv7", "Conv", ["x", "w", "b"], ["y"], new Attributes().Set("group", 4));
        var e = Assert.Throws<ArgumentException>(() => op.InferShapes(node, [new Shape(1, 8, 5, 5), new Shape(4, 4, 3, 3), new Shape(4)]));
        Assert.Contains("conv7", e.Message);
        Assert.Contains("group 4", e.Message);
        var bad = new Node("conv8", "Conv", ["x", "w", "b"], ["y"], new Attributes().Set("pads", new[] { 1, 1, 1 }));
        Assert.Contains("pads", Assert.Throws<ArgumentException>(() => op.InferShapes(bad, [new Shape(1, 2, 5, 5), new Shape(2, 2, 3, 3), new Shape(2)])).Message);

        var g = OneConv(new Shape(1, 4, 6, 6), new Shape(4, 2, 3, 3), new Attributes().Set("group", 2).Set("pads", new[] { 1, 1 }));
        var refused = Assert.Throws<NotSupportedException>(() => new ExecutionPlan(g,
            new PlanRequest(new Shape(1, 4, 6, 6), [], Training: true, Trainable: new HashSet<string> { "w", "b" })));
        Assert.Contains("conv", refused.Message);
        Assert.Contains("group 2", refused.Message);
        // The dense node with four pads still plans for training.
        var dense = OneConv(new Shape(1, 4, 6, 6), new Shape(4, 4, 3, 3), new Attributes().Set("pads", new[] { 1, 1, 0, 2 }));
        _ = new ExecutionPlan(dense, new PlanRequest(new Shape(1, 4, 6, 6), [], Training: true, Trainable: new HashSet<string> { "w", "b" }));
    }
}

/// <summary>ConvGeneralTests on ILGPU's CPU accelerator simulating 256-thread groups.</summary>
public sealed class ConvGeneralTestsOnCpuSimulator(CpuSimulatorFixture fx) : ConvGeneralTests(fx), IClassFixture<CpuSimulatorFixture>;

/// <summary>ConvGeneralTests on the first OpenCL device ILGPU runs on (PoCL in CI).</summary>
[RequiresBackend("opencl")]
public sealed class ConvGeneralTestsOnOpenCl(OpenClFixture fx) : ConvGeneralTests(fx), IClassFixture<OpenClFixture>;
