using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using Tp7.Engine.Kernels;
using NetGraph = Tp7.Engine.Graph.Graph;

namespace Tp7.Tests;

/// <summary>
/// The tensor ops an ONNX model brings (broadcasting Add/Sub/Mul/Div, Clip, LeakyRelu, Concat, Split, Transpose,
/// MatMul, Reshape, Identity, Softmax along an axis, Flatten at an axis), each run through a small graph on the
/// backend of the subclass and compared with a reference written out here in plain loops (double where it sums).
/// Element-wise results must match to float rounding (|Δ| ≤ 1e-6 + 1e-6·|ref|), products and softmax to
/// 1e-5 + 1e-5·|ref|. A failure prints the worst index, both values and the case.
/// </summary>
public abstract class TensorOpsTests
{
    protected abstract ComputeDevice Device { get; }

    // ----- graph building and running -----

    protected sealed class Net
    {
        public NetGraph Graph { get; } = new();
        readonly Dictionary<string, float[]> values = [];

        public Net(Shape input) => Graph.Inputs["x"] = input;

        public Net Param(string name, Shape shape, float[] data)
        {
            Assert.Equal(shape.Elements, data.Length);
            Graph.Parameters.Add((name, shape));
            values[name] = data;
            return this;
        }

        public Net Node(string op, string[] inputs, string[] outputs, Attributes? attributes = null)
        {
            Graph.Nodes.Add(new Node(outputs[0], op, inputs, outputs, attributes ?? new Attributes()));
            Graph.Output = outputs[0];
            return this;
        }

        public Dictionary<string, float[]> Run(ComputeDevice device, float[] x, Shape shape, params string[] outputs)
        {
            using var net = new Network(device, Graph);
            foreach (var (k, v) in values) net.Parameters.Write(k, v);
            return net.Forward(x, shape, outputs);
        }
    }

    protected static Attributes A() => new();

    protected static float[] R(long length, int seed, double scale = 1, double shift = 0)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, (int)length).Select(_ => (float)(shift + scale * (rng.NextDouble() * 2 - 1))).ToArray();
    }

    protected static long Count(params int[] dims) => dims.Aggregate(1L, (p, d) => p * d);

    protected void AssertClose(float[] got, double[] want, double atol, double rtol, string what)
    {
        Assert.True(got.Length == want.Length, $"{Device.Name}: {what}: {got.Length} values, expected {want.Length}");
        int worst = -1;
        double worstExcess = 0;
        for (int i = 0; i < want.Length; i++)
        {
            double excess = Math.Abs(got[i] - want[i]) - (atol + rtol * Math.Abs(want[i]));
            if (double.IsNaN(got[i]) != double.IsNaN(want[i])) excess = double.PositiveInfinity;
            if (excess > worstExcess) { worstExcess = excess; worst = i; }
        }
        Assert.True(worst < 0, worst < 0 ? "" : $"{Device.Name}: {what}: index {worst}: got {got[worst]}, expected {want[worst]}");
    }

    /// <summary>numpy broadcasting by multi-index: y's index i maps to a's and b's index with their unit dims held at 0.</summary>
    protected static double[] BroadcastReference(int[] ad, float[] a, int[] bd, float[] b, Func<float, float, float> f, out int[] yd)
    {
        int r = Math.Max(ad.Length, bd.Length);
        int[] Pad(int[] d) => Enumerable.Repeat(1, r - d.Length).Concat(d).ToArray();
        int[] pa = Pad(ad), pb = Pad(bd);
        yd = Enumerable.Range(0, r).Select(i => Math.Max(pa[i], pb[i])).ToArray();
        var y = new double[Count(yd)];
        var idx = new int[r];
        for (long i = 0; i < y.Length; i++)
        {
            long rem = i;
            for (int d = r - 1; d >= 0; d--) { idx[d] = (int)(rem % yd[d]); rem /= yd[d]; }
            long ia = 0, ib = 0;
            for (int d = 0; d < r; d++)
            {
                ia = ia * pa[d] + (pa[d] == 1 ? 0 : idx[d]);
                ib = ib * pb[d] + (pb[d] == 1 ? 0 : idx[d]);
            }
            y[i] = f(a[ia], b[ib]);
        }
        return y;
    }

    static Func<float, float, float> Arith(string op) => op switch
    {
        "Add" => (p, q) => p + q,
        "Sub" => (p, q) => p - q,
        "Mul" => (p, q) => p * q,
        _ => (p, q) => p / q,
    };

    /// <summary>x (the input, batch first) op p (a parameter), or p op x when <paramref name="paramFirst"/>.</summary>
    void CheckBinaryWithParameter(string op, int[] xd, int[] pd, bool paramFirst = false)
    {
        var x = R(Count(xd), 1);
        var p = R(Count(pd), 2, 1, op == "Div" ? 2.5 : 0); // divisors in [1.5, 3.5]
        var net = new Net(new Shape(xd).WithBatch(1)).Param("p", new Shape(pd), p)
            .Node(op, paramFirst ? ["p", "x"] : ["x", "p"], ["y"]);
        var got = net.Run(Device, x, new Shape(xd), "y")["y"];
        var want = paramFirst ? BroadcastReference(pd, p, xd, x, Arith(op), out var yd) : BroadcastReference(xd, x, pd, p, Arith(op), out yd);
        AssertClose(got, want, 1e-6, 1e-6, $"{op} [{string.Join(",", xd)}] with [{string.Join(",", pd)}] -> [{string.Join(",", yd)}]");
    }

    // ----- broadcasting arithmetic -----

    [Fact] public void AddBroadcastsAPerChannelParameter() => CheckBinaryWithParameter("Add", [2, 3, 4, 5], [3, 1, 1]);
    [Fact] public void MulBroadcastsATrailingVector() => CheckBinaryWithParameter("Mul", [2, 3, 4, 5], [5]);
    [Fact] public void SubBroadcastsABatchOneMeanImage() => CheckBinaryWithParameter("Sub", [2, 3, 4, 4], [1, 3, 4, 4]);
    [Fact] public void SubWithTheParameterFirstKeepsOperandOrder() => CheckBinaryWithParameter("Sub", [2, 3, 4, 4], [3, 1, 4], paramFirst: true);
    [Fact] public void DivByAParameter() => CheckBinaryWithParameter("Div", [2, 3, 4, 5], [3, 4, 1]);
    [Fact] public void DivOfAParameterByTheInput() => CheckBinaryWithParameter("Div", [3, 2, 5], [5], paramFirst: true);
    [Fact] public void AddAndMulOfAScalarParameter()
    {
        CheckBinaryWithParameter("Add", [2, 3, 4], []);
        CheckBinaryWithParameter("Mul", [2, 7], []);
        CheckBinaryWithParameter("Sub", [3, 5], [], paramFirst: true);
    }
    [Fact] public void EqualShapesAndPerChannelAboveTheParallelThreshold()
    {
        CheckBinaryWithParameter("Mul", [2, 16, 40, 40], [1, 16, 40, 40]);
        CheckBinaryWithParameter("Sub", [2, 16, 40, 40], [16, 1, 1]);
        CheckBinaryWithParameter("Div", [2, 16, 40, 40], [40]);
    }
    [Fact] public void BothOperandsBroadcastOverFiveDims() => CheckBinaryWithParameter("Add", [2, 1, 4, 1, 3], [3, 1, 5, 1]);

    [Fact]
    public void AddOfTwoActivationsOfEqualShape()
    {
        int[] xd = [2, 3, 5];
        var x = R(Count(xd), 4);
        var net = new Net(new Shape(1, 3, 5)).Param("s", Shape.Scalar, [3f])
            .Node("Mul", ["x", "s"], ["xs"]).Node("Add", ["x", "xs"], ["y"]);
        var got = net.Run(Device, x, new Shape(xd), "y")["y"];
        AssertClose(got, x.Select(v => (double)(v + v * 3f)).ToArray(), 1e-6, 1e-6, "x + 3x");
    }

    [Fact]
    public void ShapesThatDoNotBroadcastAreNamed()
    {
        var net = new Net(new Shape(1, 3, 4)).Param("p", new Shape(2, 4), R(8, 1)).Node("Add", ["x", "p"], ["y"]);
        var e = Assert.Throws<ArgumentException>(() => net.Run(Device, R(12, 1), new Shape(1, 3, 4), "y"));
        Assert.Contains("y (Add)", e.Message);
        Assert.Contains("[1, 3, 4] and [2, 4] do not broadcast", e.Message);
    }

    // ----- Clip, LeakyRelu -----

    [Fact]
    public void ClipAndLeakyReluFollowTheirDefinitions()
    {
        var x = R(2 * 3 * 37, 5, 3);
        var shape = new Shape(2, 3, 37);
        var clip = new Net(new Shape(1, 3, 37)).Node("Clip", ["x"], ["y"], A().Set("min", -1f).Set("max", 0.5f)).Run(Device, x, shape, "y")["y"];
        AssertClose(clip, x.Select(v => (double)Math.Clamp(v, -1f, 0.5f)).ToArray(), 0, 0, "Clip(-1, 0.5)");
        var relu6 = new Net(new Shape(1, 3, 37)).Node("Clip", ["x"], ["y"], A().Set("min", 0f)).Run(Device, x, shape, "y")["y"];
        AssertClose(relu6, x.Select(v => (double)Math.Max(v, 0f)).ToArray(), 0, 0, "Clip(min 0)");
        var inverted = new Net(new Shape(1, 3, 37)).Node("Clip", ["x"], ["y"], A().Set("min", 1f).Set("max", -1f)).Run(Device, x, shape, "y")["y"];
        AssertClose(inverted, x.Select(_ => -1.0).ToArray(), 0, 0, "Clip(1, -1) is max everywhere");
        var leaky = new Net(new Shape(1, 3, 37)).Node("LeakyRelu", ["x"], ["y"], A().Set("alpha", 0.2f)).Run(Device, x, shape, "y")["y"];
        AssertClose(leaky, x.Select(v => (double)(v < 0 ? 0.2f * v : v)).ToArray(), 0, 0, "LeakyRelu(0.2)");
        var leakyDefault = new Net(new Shape(1, 3, 37)).Node("LeakyRelu", ["x"], ["y"]).Run(Device, x, shape, "y")["y"];
        AssertClose(leakyDefault, x.Select(v => (double)(v < 0 ? 0.01f * v : v)).ToArray(), 0, 0, "LeakyRelu default alpha 0.01");
    }

    // ----- Concat, Split -----

    /// <summary>Reference concat along <paramref name="axis"/> of row-major parts that agree elsewhere.</summary>
    static double[] ConcatReference(int axis, params (int[] Dims, float[] Data)[] parts)
    {
        long outer = Count(parts[0].Dims[..axis]), inner = Count(parts[0].Dims[(axis + 1)..]);
        var y = new List<double>();
        for (long o = 0; o < outer; o++)
            foreach (var (d, data) in parts)
                for (long j = 0; j < d[axis] * inner; j++) y.Add(data[o * d[axis] * inner + j]);
        return [.. y];
    }

    [Fact]
    public void ConcatOfThreeInputsAlongAxis1And3()
    {
        // Axis 1: x [2, 3, 3, 4] split into p (1 channel) and q (2), concatenated as (q, x, p): sizes 2, 3, 1.
        var x = R(2 * 3 * 3 * 4, 6);
        var got = new Net(new Shape(1, 3, 3, 4))
            .Node("Split", ["x"], ["p", "q"], A().Set("axis", 1).Set("split", new[] { 1, 2 }))
            .Node("Concat", ["q", "x", "p"], ["y"], A().Set("axis", 1)).Run(Device, x, new Shape(2, 3, 3, 4), "y")["y"];
        float[] Channels(float[] v, int c0, int c1) => Enumerable.Range(0, 2).SelectMany(n => v.Skip((n * 3 + c0) * 12).Take((c1 - c0) * 12)).ToArray();
        AssertClose(got, ConcatReference(1, ([2, 2, 3, 4], Channels(x, 1, 3)), ([2, 3, 3, 4], x), ([2, 1, 3, 4], Channels(x, 0, 1))), 0, 0, "Concat axis 1");

        // Axis 3 (inner length 1): x [3, 2, 2, 5] split along the width into u (2) and v (3), concatenated as (v, 2x, u).
        var x3 = R(3 * 2 * 2 * 5, 8);
        var got3 = new Net(new Shape(1, 2, 2, 5)).Param("two", Shape.Scalar, [2f])
            .Node("Split", ["x"], ["u", "v"], A().Set("axis", 3).Set("split", new[] { 2, 3 }))
            .Node("Mul", ["x", "two"], ["x2"]).Node("Concat", ["v", "x2", "u"], ["y"], A().Set("axis", 3))
            .Run(Device, x3, new Shape(3, 2, 2, 5), "y")["y"];
        float[] Columns(int c0, int c1) => Enumerable.Range(0, 12).SelectMany(r => x3.Skip(r * 5 + c0).Take(c1 - c0)).ToArray();
        AssertClose(got3, ConcatReference(3, ([3, 2, 2, 3], Columns(2, 5)), ([3, 2, 2, 5], x3.Select(v => 2 * v).ToArray()), ([3, 2, 2, 2], Columns(0, 2))), 0, 0, "Concat axis 3");

        var bad = new Net(new Shape(1, 3, 3, 4)).Param("w", new Shape(1, 3, 3, 5), R(45, 1)).Node("Concat", ["x", "w"], ["y"], A().Set("axis", 1));
        var e = Assert.Throws<ArgumentException>(() => bad.Run(Device, x, new Shape(2, 3, 3, 4), "y"));
        Assert.Contains("y (Concat): inputs [1, 3, 3, 4], [1, 3, 3, 5] differ outside axis 1", e.Message);
    }

    [Fact]
    public void SplitIntoUnequalPartsWritesEachOutput()
    {
        var x = R(3 * 7 * 2, 10);
        var outs = new Net(new Shape(1, 7, 2)).Node("Split", ["x"], ["a", "b", "c"], A().Set("axis", 1).Set("split", new[] { 2, 4, 1 }))
            .Run(Device, x, new Shape(3, 7, 2), "a", "b", "c");
        int at = 0;
        foreach (var (name, size) in new[] { ("a", 2), ("b", 4), ("c", 1) })
        {
            var want = new double[3 * size * 2];
            for (int n = 0; n < 3; n++)
                for (int k = 0; k < size; k++)
                    for (int j = 0; j < 2; j++) want[(n * size + k) * 2 + j] = x[(n * 7 + at + k) * 2 + j];
            AssertClose(outs[name], want, 0, 0, $"Split part {name}");
            at += size;
        }
        var bad = new Net(new Shape(1, 7, 2)).Node("Split", ["x"], ["a", "b"], A().Set("axis", 1).Set("split", new[] { 2, 4 }));
        var e = Assert.Throws<ArgumentException>(() => bad.Run(Device, x, new Shape(3, 7, 2), "a"));
        Assert.Contains("a (Split): split [2, 4] does not add up to axis 1 of [1, 7, 2] (7)", e.Message);
    }

    /// <summary>ResNet/Caffe preprocessing: RGB split into channels, concatenated as BGR, a mean image subtracted, at batch 3.</summary>
    [Fact]
    public void SplitChannelsConcatReversedThenSubtractAMeanImage()
    {
        const int n = 3, h = 5, w = 6;
        var x = R(n * 3 * h * w, 11, 128, 128);
        var mean = R(3 * h * w, 12, 20, 110);
        var net = new Net(new Shape(1, 3, h, w)).Param("mean", new Shape(1, 3, h, w), mean)
            .Node("Split", ["x"], ["r", "g", "b"], A().Set("axis", 1).Set("split", new[] { 1, 1, 1 }))
            .Node("Concat", ["b", "g", "r"], ["bgr"], A().Set("axis", 1))
            .Node("Sub", ["bgr", "mean"], ["y"]);
        var got = net.Run(Device, x, new Shape(n, 3, h, w), "y")["y"];
        var want = new double[got.Length];
        for (int i = 0; i < n; i++)
            for (int c = 0; c < 3; c++)
                for (int p = 0; p < h * w; p++)
                    want[(i * 3 + c) * h * w + p] = x[(i * 3 + (2 - c)) * h * w + p] - mean[c * h * w + p];
        AssertClose(got, want, 1e-5, 1e-6, "BGR - mean");
    }

    // ----- Transpose -----

    [Theory]
    [InlineData(new[] { 0, 2, 3, 1 })]
    [InlineData(new[] { 0, 3, 1, 2 })]
    [InlineData(new[] { 0, 1, 3, 2 })]
    public void TransposePermutesAxes(int[] perm)
    {
        int[] xd = [2, 3, 4, 5];
        var x = R(Count(xd), 13);
        var got = new Net(new Shape(1, 3, 4, 5)).Node("Transpose", ["x"], ["y"], A().Set("perm", perm)).Run(Device, x, new Shape(xd), "y")["y"];
        var yd = perm.Select(p => xd[p]).ToArray();
        var want = new double[x.Length];
        var xi = new int[4];
        for (int a = 0; a < yd[0]; a++) for (int b = 0; b < yd[1]; b++) for (int c = 0; c < yd[2]; c++) for (int d = 0; d < yd[3]; d++)
        {
            int[] yi = [a, b, c, d];
            for (int k = 0; k < 4; k++) xi[perm[k]] = yi[k];
            want[((a * yd[1] + b) * yd[2] + c) * yd[3] + d] = x[((xi[0] * xd[1] + xi[1]) * xd[2] + xi[2]) * xd[3] + xi[3]];
        }
        AssertClose(got, want, 0, 0, $"Transpose [{string.Join(",", perm)}]");
    }

    [Fact]
    public void TransposeThatMovesTheBatchIsRefused()
    {
        var net = new Net(new Shape(1, 3, 4)).Node("Transpose", ["x"], ["y"], A().Set("perm", new[] { 1, 0, 2 }));
        var e = Assert.Throws<ArgumentException>(() => net.Run(Device, R(12, 1), new Shape(1, 3, 4), "y"));
        Assert.Contains("moves the batch axis", e.Message);
    }

    // ----- MatMul -----

    /// <summary>Reference product of row-major (M, K) at a[ao..] and (K, N) at b[bo..], in double.</summary>
    static void Product(double[] y, long yo, float[] a, long ao, float[] b, long bo, int m, int k, int n)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double)a[ao + i * k + p] * b[bo + p * n + j];
                y[yo + i * n + j] = s;
            }
    }

    [Fact]
    public void MatMulOfTheInputByAWeightMatrix()
    {
        const int n = 3, k = 70, m = 65; // past one 64-wide tile
        var x = R(n * k, 14);
        var w = R(k * m, 15);
        var got = new Net(new Shape(1, k)).Param("w", new Shape(k, m), w).Node("MatMul", ["x", "w"], ["y"]).Run(Device, x, new Shape(n, k), "y")["y"];
        var want = new double[n * m];
        Product(want, 0, x, 0, w, 0, n, k, m);
        AssertClose(got, want, 1e-5, 1e-5, "(N,K) @ (K,M)");
    }

    [Fact]
    public void MatMulOfAStackByAWeightMatrixAndByABroadcastStack()
    {
        const int n = 2, a = 5, k = 7, m = 4;
        var x = R(n * a * k, 16);
        var w = R(k * m, 17);
        var want = new double[n * a * m];
        for (int i = 0; i < n; i++) Product(want, i * a * m, x, i * a * k, w, 0, a, k, m);
        var got = new Net(new Shape(1, a, k)).Param("w", new Shape(k, m), w).Node("MatMul", ["x", "w"], ["y"]).Run(Device, x, new Shape(n, a, k), "y")["y"];
        AssertClose(got, want, 1e-5, 1e-5, "(N,A,K) @ (K,M)");
        var got1 = new Net(new Shape(1, a, k)).Param("w", new Shape(1, k, m), w).Node("MatMul", ["x", "w"], ["y"]).Run(Device, x, new Shape(n, a, k), "y")["y"];
        AssertClose(got1, want, 1e-5, 1e-5, "(N,A,K) @ (1,K,M)");
    }

    [Fact]
    public void BatchedMatMulOfTwoStacks()
    {
        const int n = 3, a = 4, k = 6, m = 5;
        // (N, A, K) @ (N, K, M) of two activations: x [N, A + M, K] split into rows (N, A, K) and (N, M, K), the second transposed.
        var xx = R(n * (a + m) * k, 18);
        var want = new double[n * a * m];
        var left = new float[n * a * k];
        var right = new float[n * k * m];
        for (int i = 0; i < n; i++)
        {
            for (int r = 0; r < a; r++) for (int q = 0; q < k; q++) left[(i * a + r) * k + q] = xx[(i * (a + m) + r) * k + q];
            for (int c = 0; c < m; c++) for (int q = 0; q < k; q++) right[(i * k + q) * m + c] = xx[(i * (a + m) + a + c) * k + q];
            Product(want, i * a * m, left, i * a * k, right, i * k * m, a, k, m);
        }
        var got = new Net(new Shape(1, a + m, k)).Node("Split", ["x"], ["l", "r"], A().Set("axis", 1).Set("split", new[] { a, m }))
            .Node("Transpose", ["r"], ["rt"], A().Set("perm", new[] { 0, 2, 1 })).Node("MatMul", ["l", "rt"], ["y"])
            .Run(Device, xx, new Shape(n, a + m, k), "y")["y"];
        AssertClose(got, want, 1e-5, 1e-5, "(N,A,K) @ (N,K,M)");
        var x = left;

        // Both operands activations: x @ xᵀ per sample (N, A, A).
        var xt = new Net(new Shape(1, a, k)).Node("Transpose", ["x"], ["xt"], A().Set("perm", new[] { 0, 2, 1 })).Node("MatMul", ["x", "xt"], ["y"])
            .Run(Device, x, new Shape(n, a, k), "y")["y"];
        var gram = new double[n * a * a];
        for (int i = 0; i < n; i++)
            for (int r = 0; r < a; r++)
                for (int c = 0; c < a; c++)
                {
                    double s = 0;
                    for (int q = 0; q < k; q++) s += (double)x[(i * a + r) * k + q] * x[(i * a + c) * k + q];
                    gram[(i * a + r) * a + c] = s;
                }
        AssertClose(xt, gram, 1e-5, 1e-5, "x @ transpose(x)");

        // A shared (A, K) parameter on the left of a stack (N, K, M): broadcast a, one product per sample.
        var shared = R(a * k, 20);
        var xs = R(n * k * m, 21);
        var wantLeft = new double[n * a * m];
        for (int i = 0; i < n; i++) Product(wantLeft, i * a * m, shared, 0, xs, i * k * m, a, k, m);
        var gotLeft = new Net(new Shape(1, k, m)).Param("l", new Shape(a, k), shared).Node("MatMul", ["l", "x"], ["y"]).Run(Device, xs, new Shape(n, k, m), "y")["y"];
        AssertClose(gotLeft, wantLeft, 1e-5, 1e-5, "(A,K) @ (N,K,M)");
    }

    [Fact]
    public void MatMulWithOneDimensionalOperands()
    {
        const int n = 4, k = 9, m = 3;
        var x = R(n * k, 22);
        var v = R(k, 23);
        var want = new double[n];
        Product(want, 0, x, 0, v, 0, n, k, 1);
        var got = new Net(new Shape(1, k)).Param("v", new Shape(k), v).Node("MatMul", ["x", "v"], ["y"]).Run(Device, x, new Shape(n, k), "y")["y"];
        AssertClose(got, want, 1e-5, 1e-5, "(N,K) @ (K)");

        // (K) @ (N, K, M) -> (N, M).
        var xs = R(n * k * m, 24);
        var wantRow = new double[n * m];
        for (int i = 0; i < n; i++) Product(wantRow, i * m, v, 0, xs, i * k * m, 1, k, m);
        var gotRow = new Net(new Shape(1, k, m)).Param("v", new Shape(k), v).Node("MatMul", ["v", "x"], ["y"]).Run(Device, xs, new Shape(n, k, m), "y")["y"];
        AssertClose(gotRow, wantRow, 1e-5, 1e-5, "(K) @ (N,K,M)");

        var bad = new Net(new Shape(1, k)).Param("v", new Shape(k + 1), R(k + 1, 1)).Node("MatMul", ["x", "v"], ["y"]);
        var e = Assert.Throws<ArgumentException>(() => bad.Run(Device, x, new Shape(n, k), "y"));
        Assert.Contains("y (MatMul): inner dimensions differ (9 vs 10)", e.Message);
    }

    // ----- Reshape, Identity, Flatten -----

    [Fact]
    public void ReshapeWithZeroAndMinusOneIsAViewAtBatch3()
    {
        var x = R(3 * 4 * 6, 25);
        var net = new Net(new Shape(1, 4, 6)).Node("Reshape", ["x"], ["r"], A().Set("shape", new[] { 0, -1, 2 }))
            .Node("Identity", ["r"], ["i"]).Node("Relu", ["i"], ["y"]);
        var outs = net.Run(Device, x, new Shape(3, 4, 6), "r", "y");
        AssertClose(outs["r"], x.Select(v => (double)v).ToArray(), 0, 0, "Reshape [0,-1,2]");
        AssertClose(outs["y"], x.Select(v => (double)Math.Max(v, 0f)).ToArray(), 0, 0, "Relu of the reshaped view");
        var plan = new ExecutionPlan(net.Graph, new PlanRequest(new Shape(3, 4, 6), ["y"]));
        Assert.Equal(new Shape(3, 12, 2), plan.Shapes["r"]);
        Assert.Equal(plan.OffsetOf("x"), plan.OffsetOf("r"));
        Assert.Equal(plan.OffsetOf("x"), plan.OffsetOf("i"));
    }

    [Fact]
    public void ReshapeOfAParameterViewsTheParameterBlock()
    {
        // A per-channel scale stored as [3], reshaped to [3, 1, 1] and multiplied in: no copy, no arena memory.
        var s = R(3, 26, 1, 2);
        var x = R(2 * 3 * 2 * 2, 27);
        var net = new Net(new Shape(1, 3, 2, 2)).Param("s", new Shape(3), s)
            .Node("Reshape", ["s"], ["s3"], A().Set("shape", new[] { 3, 1, 1 })).Node("Mul", ["x", "s3"], ["y"]);
        var got = net.Run(Device, x, new Shape(2, 3, 2, 2), "y")["y"];
        AssertClose(got, BroadcastReference([2, 3, 2, 2], x, [3, 1, 1], s, (p, q) => p * q, out _), 1e-6, 1e-6, "x * reshape(s)");
        var plan = new ExecutionPlan(net.Graph, new PlanRequest(new Shape(2, 3, 2, 2), ["y"]));
        Assert.Equal("s", plan.ParameterViewOf("s3"));
        Assert.Equal(2 * 32, plan.ArenaElements); // x and y only (24 floats each, aligned to 16)
    }

    [Fact]
    public void ReshapeThatLosesTheBatchIsRefused()
    {
        var net = new Net(new Shape(1, 4, 6)).Node("Reshape", ["x"], ["y"], A().Set("shape", new[] { 1, -1 }));
        var e = Assert.Throws<ArgumentException>(() => net.Run(Device, R(72, 1), new Shape(3, 4, 6), "y"));
        Assert.Contains("y (Reshape): output 'y' has shape [1, 72], whose first dim is not the batch 3", e.Message);
        var bad = new Net(new Shape(1, 4, 6)).Node("Reshape", ["x"], ["y"], A().Set("shape", new[] { 0, 5, -1 }));
        var e2 = Assert.Throws<ArgumentException>(() => bad.Run(Device, R(72, 1), new Shape(3, 4, 6), "y"));
        Assert.Contains("cannot infer the -1 of [0, 5, -1] from [1, 4, 6] (24 elements)", e2.Message);
    }

    [Fact]
    public void FlattenAtAnAxisIsAView()
    {
        var x = R(2 * 3 * 4 * 5, 28);
        var net = new Net(new Shape(1, 3, 4, 5)).Node("Flatten", ["x"], ["f"], A().Set("axis", 1)).Node("Relu", ["f"], ["y"]);
        var outs = net.Run(Device, x, new Shape(2, 3, 4, 5), "y");
        AssertClose(outs["y"], x.Select(v => (double)Math.Max(v, 0f)).ToArray(), 0, 0, "Relu(Flatten)");
        var plan = new ExecutionPlan(net.Graph, new PlanRequest(new Shape(2, 3, 4, 5), ["y"]));
        Assert.Equal(new Shape(2, 60), plan.Shapes["f"]);
        Assert.Equal(plan.OffsetOf("x"), plan.OffsetOf("f"));
        var folded = new Net(new Shape(1, 3, 4, 5)).Node("Flatten", ["x"], ["f"], A().Set("axis", 2));
        // Axis 2 folds the channels into the first dim ([N·3, 20]): refused, the batch would not stay first.
        var e = Assert.Throws<ArgumentException>(() => new ExecutionPlan(folded.Graph, new PlanRequest(new Shape(2, 3, 4, 5), ["f"])));
        Assert.Contains("whose first dim is not the batch 2", e.Message);
    }

    // ----- Softmax -----

    /// <summary>Reference softmax of x viewed as (outer, axis, inner) along the middle, in double.</summary>
    static double[] SoftmaxReference(float[] x, int outer, int axis, int inner)
    {
        var y = new double[x.Length];
        for (int o = 0; o < outer; o++)
            for (int j = 0; j < inner; j++)
            {
                double m = double.NegativeInfinity, s = 0;
                for (int a = 0; a < axis; a++) m = Math.Max(m, x[(o * axis + a) * inner + j]);
                for (int a = 0; a < axis; a++) s += Math.Exp(x[(o * axis + a) * inner + j] - m);
                for (int a = 0; a < axis; a++) y[(o * axis + a) * inner + j] = Math.Exp(x[(o * axis + a) * inner + j] - m) / s;
            }
        return y;
    }

    [Fact]
    public void SoftmaxAlongAxis1OfA4DValue()
    {
        var x = R(2 * 5 * 3 * 4, 29, 4);
        var got = new Net(new Shape(1, 5, 3, 4)).Node("Softmax", ["x"], ["y"], A().Set("axis", 1)).Run(Device, x, new Shape(2, 5, 3, 4), "y")["y"];
        AssertClose(got, SoftmaxReference(x, 2, 5, 12), 1e-6, 1e-5, "Softmax axis 1 of [2,5,3,4]");
        var last = new Net(new Shape(1, 5, 3, 4)).Node("Softmax", ["x"], ["y"], A().Set("axis", -1)).Run(Device, x, new Shape(2, 5, 3, 4), "y")["y"];
        AssertClose(last, SoftmaxReference(x, 30, 4, 1), 1e-6, 1e-5, "Softmax axis -1 of [2,5,3,4]");
        var plain = new Net(new Shape(1, 60)).Node("Softmax", ["x"], ["y"]).Run(Device, x, new Shape(2, 60), "y")["y"];
        AssertClose(plain, SoftmaxReference(x, 2, 60, 1), 1e-6, 1e-5, "Softmax of (N, classes) without attributes");
    }

    [Fact]
    public void SoftmaxCoerce2dFlattensFromTheAxis()
    {
        var x = R(2 * 3 * 2 * 2, 30, 3);
        var got = new Net(new Shape(1, 3, 2, 2)).Node("Softmax", ["x"], ["y"], A().Set("axis", 1).Set("coerce2d", true)).Run(Device, x, new Shape(2, 3, 2, 2), "y")["y"];
        AssertClose(got, SoftmaxReference(x, 2, 12, 1), 1e-6, 1e-5, "Softmax coerce2d axis 1 of [2,3,2,2]");
        var at2 = new Net(new Shape(1, 3, 2, 2)).Node("Softmax", ["x"], ["y"], A().Set("axis", 2).Set("coerce2d", true)).Run(Device, x, new Shape(2, 3, 2, 2), "y")["y"];
        AssertClose(at2, SoftmaxReference(x, 6, 4, 1), 1e-6, 1e-5, "Softmax coerce2d axis 2 of [2,3,2,2]");
        var e = Assert.Throws<ArgumentException>(() => new Net(new Shape(1, 3)).Node("Softmax", ["x"], ["y"], A().Set("axis", 0)).Run(Device, x[..6], new Shape(2, 3), "y"));
        Assert.Contains("axis 0 is not one of 1 .. 1", e.Message);
    }

    // ----- planner -----

    [Fact]
    public void SplitOutputsGetTheirOwnBuffersAndUnreadOnesAreStillWritten()
    {
        var x = R(2 * 6, 31);
        var net = new Net(new Shape(1, 6)).Node("Split", ["x"], ["a", "b"], A().Set("axis", 1).Set("split", new[] { 4, 2 }))
            .Node("Relu", ["b"], ["y"]);
        var plan = new ExecutionPlan(net.Graph, new PlanRequest(new Shape(2, 6), ["y"]));
        Assert.NotEqual(plan.OffsetOf("a"), plan.OffsetOf("b"));
        var got = net.Run(Device, x, new Shape(2, 6), "y")["y"];
        AssertClose(got, new[] { x[4], x[5], x[10], x[11] }.Select(v => (double)Math.Max(v, 0f)).ToArray(), 0, 0, "Relu of split part b");
    }
}

public sealed class TensorOpsHostTests : TensorOpsTests, IDisposable
{
    readonly HostDevice device = new();
    protected override ComputeDevice Device => device;
    public void Dispose() => device.Dispose();

    /// <summary>The vectorised host broadcasting against its one-element-at-a-time specification on random shapes.</summary>
    [Property(MaxTest = 60)]
    public Property BinaryHostMatchesItsNaiveVersionOnRandomBroadcasts()
    {
        var gen = from rank in Gen.Choose(1, 5)
                  from y in Gen.Choose(1, 6).ArrayOf(rank)
                  from maskA in Gen.Elements(false, true).ArrayOf(rank)
                  from maskB in Gen.Elements(false, true).ArrayOf(rank)
                  from dropA in Gen.Choose(0, rank)
                  from kind in Gen.Elements(BinaryKind.Add, BinaryKind.Sub, BinaryKind.Mul, BinaryKind.Div)
                  select (y: y.ToArray(), a: y.Select((d, i) => maskA[i] ? 1 : d).Skip(dropA).ToArray(), b: y.Select((d, i) => maskB[i] ? 1 : d).ToArray(), kind);
        return Prop.ForAll(gen.ToArbitrary(), c =>
        {
            var yd = StridedLayout.BroadcastDims(c.a, c.b)!;
            var layout = StridedLayout.Binary(yd, c.a, c.b);
            var a = R(Count(c.a), 1, 1, 2);
            var b = R(Count(c.b), 2, 1, 2);
            var fast = new float[Count(yd)];
            var naive = new float[fast.Length];
            Broadcast.BinaryHost(c.kind, fast, a, b, layout);
            Broadcast.BinaryHost_V1Naive(c.kind, naive, a, b, layout);
            var want = BroadcastReference(c.a, a, c.b, b, (p, q) => Broadcast.Apply(c.kind, p, q), out _);
            return fast.SequenceEqual(naive) && naive.Select((v, i) => (double)v == want[i]).All(ok => ok);
        });
    }
}

/// <summary>ILGPU's CPU accelerator with GPU-sized (256-thread) groups, so MatMul runs the tiled GEMM users get on a GPU.</summary>
public sealed class IlgpuCpuDeviceFixture : IDisposable
{
    public IlgpuDevice Device { get; } = IlgpuDevice.OpenCpuAccelerator(gpuSizedGroups: true);
    public void Dispose() => Device.Dispose();
}

public sealed class TensorOpsIlgpuCpuTests(IlgpuCpuDeviceFixture fx) : TensorOpsTests, IClassFixture<IlgpuCpuDeviceFixture>
{
    protected override ComputeDevice Device => fx.Device;
}

/// <summary>The first OpenCL device ILGPU runs on (PoCL in CI), as a graph-executor device; none when there is none.</summary>
public sealed class OpenClDeviceFixture : IDisposable
{
    public IlgpuDevice Device { get; } = Tp7.Tests.Infrastructure.Backends.OpenClMissing == null ? Open() : null!;
    public void Dispose() => Device?.Dispose();

    static IlgpuDevice Open()
    {
        var context = Tp7.Tests.Infrastructure.Backends.CreateOpenClContext();
        return new IlgpuDevice(context, ILGPU.Runtime.OpenCL.CLContextExtensions.GetCLDevices(context)[0], ownsContext: true);
    }
}

[Tp7.Tests.Infrastructure.RequiresBackend("opencl")]
public sealed class TensorOpsOpenClTests(OpenClDeviceFixture fx) : TensorOpsTests, IClassFixture<OpenClDeviceFixture>
{
    protected override ComputeDevice Device => fx.Device;
}

/// <summary>
/// <see cref="IlgpuCpuDeviceFixture"/> with the broadcast, layout, activation and element-wise kernel families
/// forced onto their general versions (64-bit indices, scalar loads: what tensors of 2^31 elements or more take), so
/// every graph-level test above also covers them; by default the small tensors here take the 32-bit versions.
/// </summary>
public sealed class IlgpuCpuGeneralKernelsFixture : IDisposable
{
    public IlgpuDevice Device { get; } = IlgpuDevice.OpenCpuAccelerator(gpuSizedGroups: true);

    public IlgpuCpuGeneralKernelsFixture()
    {
        Device.Kernels(a => new BroadcastGpu(a) { UseGeneralKernels = true });
        Device.Kernels(a => new LayoutGpu(a) { UseGeneralKernels = true });
        Device.Kernels(a => new ActivationsGpu(a) { UseGeneralKernels = true });
        Device.Kernels(a => new ElementwiseGpu(a) { UseGeneralKernels = true });
    }

    public void Dispose() => Device.Dispose();
}

public sealed class TensorOpsIlgpuCpuGeneralKernelsTests(IlgpuCpuGeneralKernelsFixture fx) : TensorOpsTests, IClassFixture<IlgpuCpuGeneralKernelsFixture>
{
    protected override ComputeDevice Device => fx.Device;
}
