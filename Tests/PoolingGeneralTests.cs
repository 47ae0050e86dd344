using ILGPU.Runtime;
using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using Tp7.Engine.Kernels;
using NetGraph = Tp7.Engine.Graph.Graph;

using Tp7.Tests.Infrastructure;

namespace Tp7.Tests;

/// <summary>
/// The pooling ONNX models bring beyond VGG's: max pooling with asymmetric pads (ResNet's 3x3 stride-2 pool as
/// exported with pads [1, 1, 0, 0]), ceil mode and dilation, forward and backward; ONNX AveragePool with
/// count_include_pad and ceil mode, forward. Host and ILGPU (every accelerator present: the CPU accelerator, OpenCL) against double references written here
/// from PyTorch's definitions (max_pool2d, avg_pool2d, pooling_output_shape), with ONNX's separate end pads.
/// </summary>
public abstract class PoolingGeneralTests(AcceleratorFixture fx)
{
    /// <summary>
    /// Output length along one axis, counted window by window: window o starts at o·stride - pad. Floor mode keeps the
    /// windows that end inside the padded input; ceil mode also keeps one more, hanging past the padded end, when the
    /// last full window ends short of it and the extra one starts before the input's end (inside the input or the
    /// begin padding), as PyTorch and ONNX do.
    /// </summary>
    static int Windows(int size, int pad, int padEnd, int kernel, int dilation, int stride, bool ceil)
    {
        int extent = dilation * (kernel - 1) + 1, count = 0;
        for (int o = 0; ; o++)
        {
            int start = o * stride - pad;
            bool full = start + extent <= size + padEnd;
            bool ceilExtra = ceil && !full && o > 0 && (o - 1) * stride - pad + extent < size + padEnd && start < size;
            if (!full && !ceilExtra) return count;
            count++;
            if (!full) return count;
        }
    }

    record Case(int N, int C, int H, int W, int KH, int KW, int SH, int SW, int PT, int PL, int PB, int PR, int DH = 1, int DW = 1, bool Ceil = false)
    {
        public PoolShape Shape => new(N, C, H, W, KH, KW, SH, SW, PT, PL, PB, PR, DH, DW, Ceil);
        public int OH => Windows(H, PT, PB, KH, DH, SH, Ceil);
        public int OW => Windows(W, PL, PR, KW, DW, SW, Ceil);
    }

    /// <summary>Max over each window's in-bounds taps (padding is -inf), and dx with each dy at its window's first maximum.</summary>
    static (double[] Y, double[] Dx) MaxReference(Case k, float[] x, float[] dy)
    {
        int oh = k.OH, ow = k.OW;
        var y = new double[k.N * k.C * oh * ow];
        var dx = new double[x.Length];
        for (int p = 0; p < k.N * k.C; p++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    double m = double.NegativeInfinity;
                    int arg = -1;
                    for (int r = 0; r < k.KH; r++)
                        for (int q = 0; q < k.KW; q++)
                        {
                            int iy = oy * k.SH - k.PT + r * k.DH, ix = ox * k.SW - k.PL + q * k.DW;
                            if (iy < 0 || iy >= k.H || ix < 0 || ix >= k.W) continue;
                            int i = (p * k.H + iy) * k.W + ix;
                            if (x[i] > m) { m = x[i]; arg = i; }
                        }
                    int o = (p * oh + oy) * ow + ox;
                    y[o] = m;
                    if (arg >= 0) dx[arg] += dy[o];
                }
        return (y, dx);
    }

    /// <summary>
    /// avg_pool2d: the sum of the in-bounds taps over a divisor that counts, with count_include_pad, every tap inside
    /// the padded input [-pad, size + padEnd) (a ceil-mode window's taps past that are not counted), else the in-bounds taps.
    /// </summary>
    static double[] AvgReference(Case k, float[] x, bool includePad)
    {
        int oh = k.OH, ow = k.OW;
        var y = new double[k.N * k.C * oh * ow];
        for (int p = 0; p < k.N * k.C; p++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    double sum = 0;
                    int inside = 0, padded = 0;
                    for (int r = 0; r < k.KH; r++)
                        for (int q = 0; q < k.KW; q++)
                        {
                            int iy = oy * k.SH - k.PT + r, ix = ox * k.SW - k.PL + q;
                            if (iy < k.H + k.PB && ix < k.W + k.PR) padded++;
                            if (iy < 0 || iy >= k.H || ix < 0 || ix >= k.W) continue;
                            inside++;
                            sum += x[(p * k.H + iy) * k.W + ix];
                        }
                    int divisor = includePad ? padded : inside;
                    y[(p * oh + oy) * ow + ox] = divisor > 0 ? sum / divisor : 0;
                }
        return y;
    }

    static readonly Case[] MaxCases =
    [
        new(2, 3, 20, 18, 3, 3, 2, 2, 1, 1, 0, 0),                      // ResNet stem pool, pads [1, 1, 0, 0]
        new(1, 2, 8, 9, 3, 3, 2, 2, 0, 0, 0, 0, Ceil: true),            // ceil adds a window hanging past the end
        new(1, 2, 5, 5, 2, 2, 2, 2, 1, 1, 1, 1, Ceil: true),            // ceil's extra window would start in the end padding: dropped
        new(2, 2, 7, 9, 2, 2, 2, 2, 0, 0, 0, 0, Ceil: true),            // the 2x2 fast path's shape, but with a last half window
        new(1, 3, 10, 11, 3, 3, 1, 1, 2, 1, 0, 2, DH: 2, DW: 2),        // dilation 2, asymmetric pads
        new(1, 2, 11, 10, 3, 2, 2, 3, 1, 1, 1, 0, DH: 2, DW: 1, Ceil: true),
        new(2, 2, 8, 10, 2, 2, 2, 2, 0, 0, 1, 1),                       // end pads only
    ];

    [Fact]
    public void OutputSizesFollowTheCeilRule()
    {
        foreach (var k in MaxCases) Assert.Equal((k.OH, k.OW), (k.Shape.OutH, k.Shape.OutW));
        // ceil((8 - 3) / 2) + 1 = 4 windows, the last starting at row 6 of 8.
        Assert.Equal(4, new PoolShape(1, 1, 8, 8, 3, 3, 2, 2, CeilMode: true).OutH);
        Assert.Equal(3, new PoolShape(1, 1, 8, 8, 3, 3, 2, 2).OutH);
        // 5 rows padded 1 each side, 2x2 stride 2: ceil(5 / 2) + 1 = 4, but window 3 would start at row 5, in the end padding.
        Assert.Equal(3, new PoolShape(1, 1, 5, 5, 2, 2, 2, 2, 1, 1, CeilMode: true).OutH);
    }

    [Fact]
    public void MaxPoolWithAsymmetricPadsCeilModeAndDilationMatchesReference()
    {
        int seed = 200;
        foreach (var k in MaxCases)
        {
            var s = k.Shape;
            var x = ConvGeneralTests.Random(s.InputLength, seed++);
            var dy = ConvGeneralTests.Random(s.OutputLength, seed++);
            var (want, dxWant) = MaxReference(k, x, dy);
            var y = new float[s.OutputLength];
            Pooling.MaxForwardHost(y, x, s);
            ConvGeneralTests.AssertClose(want, y, $"host max forward on {s}");
            Pooling.MaxForwardHost_V1Naive(y, x, s);
            ConvGeneralTests.AssertClose(want, y, $"host V1 max forward on {s}");
            var dx = new float[s.InputLength];
            Pooling.MaxBackwardHost(dx, dy, x, s);
            ConvGeneralTests.AssertClose(dxWant, dx, $"host max backward on {s}");

            using var xb = fx.Accelerator.Allocate1D(x);
            using var dyb = fx.Accelerator.Allocate1D(dy);
            using var yb = fx.Accelerator.Allocate1D<float>(s.OutputLength);
            using var dxb = fx.Accelerator.Allocate1D<float>(s.InputLength);
            fx.Pool.MaxForward(yb.View, xb.View, s);
            fx.Pool.MaxBackward(dxb.View, dyb.View, xb.View, s);
            fx.Accelerator.Synchronize();
            ConvGeneralTests.AssertClose(want, yb.GetAsArray1D(), $"ILGPU max forward on {s}");
            ConvGeneralTests.AssertClose(dxWant, dxb.GetAsArray1D(), $"ILGPU max backward on {s}");
        }
    }

    [Fact]
    public void AveragePoolCountIncludePadAndCeilModeMatchReference()
    {
        int seed = 300, checkedCases = 0;
        var pads = new[] { (0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 2, 1), (1, 0, 0, 0) };
        var windows = new[] { (3, 2), (2, 2), (3, 1) };
        foreach (var (h, w) in new[] { (9, 8), (7, 7) })
            foreach (var (pt, pl, pb, pr) in pads)
                foreach (var (kernel, stride) in windows)
                    foreach (bool ceil in new[] { false, true })
                        foreach (bool includePad in new[] { false, true })
                        {
                            var k = new Case(2, 2, h, w, kernel, kernel, stride, stride, pt, pl, pb, pr, Ceil: ceil);
                            var s = k.Shape;
                            Assert.Equal((k.OH, k.OW), (s.OutH, s.OutW));
                            var x = ConvGeneralTests.Random(s.InputLength, seed++);
                            var want = AvgReference(k, x, includePad);
                            var y = new float[s.OutputLength];
                            Pooling.AvgForwardHost(y, x, s, includePad);
                            ConvGeneralTests.AssertClose(want, y, $"host avg (count_include_pad {includePad}) on {s}");
                            using var xb = fx.Accelerator.Allocate1D(x);
                            using var yb = fx.Accelerator.Allocate1D<float>(s.OutputLength);
                            fx.Pool.AvgForward(yb.View, xb.View, s, includePad);
                            fx.Accelerator.Synchronize();
                            ConvGeneralTests.AssertClose(want, yb.GetAsArray1D(), $"ILGPU avg (count_include_pad {includePad}) on {s}");
                            checkedCases++;
                        }
        Assert.Equal(2 * 4 * 3 * 2 * 2, checkedCases);
    }

    [Fact]
    public void CountIncludePadDividesACeilWindowByItsPartInsideThePaddedInput()
    {
        // 7 columns, 2x2 stride 2, no padding, ceil mode: the 4th window covers column 6 only. PyTorch clips it to the
        // padded input (here the input itself), so both divisors are 2 rows x 1 column: the mean of its two values.
        var s = new PoolShape(1, 1, 2, 7, 2, 2, 2, 2, CeilMode: true);
        Assert.Equal(4, s.OutW);
        var x = ConvGeneralTests.Random(s.InputLength, 7);
        foreach (bool includePad in new[] { false, true })
        {
            var y = new float[s.OutputLength];
            Pooling.AvgForwardHost(y, x, s, includePad);
            Assert.Equal((x[6] + x[13]) / 2, y[3], 6);
        }
        // With pads [0, 0, 0, 1] the same window reaches the end pad: count_include_pad divides by 4, else by 2.
        var p = new PoolShape(1, 1, 2, 7, 2, 2, 2, 2, 0, 0, 0, 1);
        var yi = new float[p.OutputLength];
        var ye = new float[p.OutputLength];
        Pooling.AvgForwardHost(yi, x, p, countIncludePad: true);
        Pooling.AvgForwardHost(ye, x, p, countIncludePad: false);
        Assert.Equal((x[6] + x[13]) / 4, yi[3], 6);
        Assert.Equal((x[6] + x[13]) / 2, ye[3], 6);
    }

    // ===== Graph level: the nodes as the ONNX importer writes them =====

    static float[] RunNode(ComputeDevice device, string op, Attributes attributes, Shape x, float[] input)
    {
        var g = new NetGraph();
        g.Inputs["x"] = x;
        g.Nodes.Add(new Node("pool", op, ["x"], ["y"], attributes));
        g.Output = "y";
        using var net = new Network(device, g);
        return net.Forward(input, x, ["y"])["y"];
    }

    [Fact]
    public void PoolNodesWithFourPadsCeilModeAndDilationRunOnHostAndIlgpu()
    {
        var shape = new Shape(2, 3, 11, 10);
        var x = ConvGeneralTests.Random(shape.Elements, 400);
        var maxCase = new Case(2, 3, 11, 10, 3, 3, 2, 2, 1, 0, 0, 1, DH: 2, DW: 1, Ceil: true);
        var maxAttributes = new Attributes().Set("kernel", new[] { 3, 3 }).Set("strides", new[] { 2, 2 })
            .Set("pads", new[] { 1, 0, 0, 1 }).Set("dilations", new[] { 2, 1 }).Set("ceil_mode", true);
        var avgCase = new Case(2, 3, 11, 10, 3, 2, 2, 2, 1, 1, 0, 1, Ceil: true);
        var avgAttributes = new Attributes().Set("kernel", new[] { 3, 2 }).Set("strides", new[] { 2, 2 })
            .Set("pads", new[] { 1, 1, 0, 1 }).Set("ceil_mode", true).Set("count_include_pad", true);
        var maxWant = MaxReference(maxCase, x, new float[maxCase.N * maxCase.C * maxCase.OH * maxCase.OW]).Y;
        var avgWant = AvgReference(avgCase, x, includePad: true);

        var maxNode = new Node("pool", "MaxPool", ["x"], ["y"], maxAttributes);
        Assert.Equal(new Shape(2, 3, maxCase.OH, maxCase.OW), OpRegistry.Get("MaxPool").InferShapes(maxNode, [shape])[0]);
        var avgNode = new Node("pool", "AveragePool", ["x"], ["y"], avgAttributes);
        Assert.Equal(new Shape(2, 3, avgCase.OH, avgCase.OW), OpRegistry.Get("AveragePool").InferShapes(avgNode, [shape])[0]);

        foreach (var device in new ComputeDevice[] { new HostDevice(), fx.OpenDevice() })
        {
            using var _ = device;
            ConvGeneralTests.AssertClose(maxWant, RunNode(device, "MaxPool", maxAttributes, shape, x), $"MaxPool node on {device.Name}");
            ConvGeneralTests.AssertClose(avgWant, RunNode(device, "AveragePool", avgAttributes, shape, x), $"AveragePool node on {device.Name}");
        }
    }

    [Fact]
    public void PoolNodesRefuseBadAttributesByName()
    {
        var x = new Shape(1, 2, 6, 6);
        var badPads = new Node("pool3", "MaxPool", ["x"], ["y"], new Attributes().Set("kernel", new[] { 3, 3 }).Set("pads", new[] { 1, 1, 1 }));
        var e = Assert.Throws<ArgumentException>(() => OpRegistry.Get("MaxPool").InferShapes(badPads, [x]));
        Assert.Contains("pool3", e.Message);
        Assert.Contains("pads", e.Message);
        var dilated = new Node("avg1", "AveragePool", ["x"], ["y"], new Attributes().Set("kernel", new[] { 3, 3 }).Set("dilations", new[] { 2, 2 }));
        Assert.Contains("avg1", Assert.Throws<ArgumentException>(() => OpRegistry.Get("AveragePool").InferShapes(dilated, [x])).Message);
        var tooBig = new Node("avg2", "AveragePool", ["x"], ["y"], new Attributes().Set("kernel", new[] { 7, 7 }));
        Assert.Contains("avg2", Assert.Throws<ArgumentException>(() => OpRegistry.Get("AveragePool").InferShapes(tooBig, [x])).Message);
    }
}

/// <summary>PoolingGeneralTests on ILGPU's CPU accelerator simulating 256-thread groups.</summary>
public sealed class PoolingGeneralTestsOnCpuSimulator(CpuSimulatorFixture fx) : PoolingGeneralTests(fx), IClassFixture<CpuSimulatorFixture>;

/// <summary>PoolingGeneralTests on the first OpenCL device ILGPU runs on (PoCL in CI).</summary>
[RequiresBackend("opencl")]
public sealed class PoolingGeneralTestsOnOpenCl(OpenClFixture fx) : PoolingGeneralTests(fx), IClassFixture<OpenClFixture>;
