using System.Diagnostics;
using System.Runtime.Intrinsics.X86;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Tp7.Engine.Kernels;

namespace Tp7.Bench;

/// <summary>
/// Every distinct convolution of ResNet18 at 224x224 (dense, BatchNorm folded into the bias, ReLU fused), our host
/// forward against ONNX Runtime running a one-node Conv + Relu model of the same shape with the same weights, built
/// here as an ONNX ModelProto. Validates each of our versions against ORT's output (max |Δ| / max |ORT| ≤ 1e-4),
/// warms up, then times rounds of (each version, ORT) back to back, each round starting with the next engine, and reports medians, GFLOP/s and the median of the
/// per-round ratios ours / ORT, per shape and FLOP-weighted over the network (each shape times its count).
/// Args: [--batch 1,8] [--reps N] [--versions auto,auto0,v1,v2,v3,v4,v5] [--only stem,l1,...]
/// </summary>
public sealed class ResNet18ConvsBench : IBenchmark
{
    public string Name => "resnet18-convs";
    public string Description => "ResNet18's conv shapes: host forward versions vs ONNX Runtime, validated, ratios per shape";

    /// <summary>One distinct conv shape of ResNet18 and how many times the network runs it.</summary>
    internal readonly record struct Layer(string Name, int C, int K, int Hw, int Kernel, int Stride, int Pad, int Count);

    // torchvision resnet18: stem, then per stage the first block's strided 3x3 and 1x1 downsample, then the stride-1 3x3s.
    // The stem's ONNX export pads 3 on all sides here (the CNTK export pads 3/2, which gives the same 112x112).
    internal static readonly Layer[] Layers =
    [
        new("stem", 3, 64, 224, 7, 2, 3, 1),
        new("l1", 64, 64, 56, 3, 1, 1, 4),
        new("l2.s2", 64, 128, 56, 3, 2, 1, 1),
        new("l2.ds", 64, 128, 56, 1, 2, 0, 1),
        new("l2", 128, 128, 28, 3, 1, 1, 3),
        new("l3.s2", 128, 256, 28, 3, 2, 1, 1),
        new("l3.ds", 128, 256, 28, 1, 2, 0, 1),
        new("l3", 256, 256, 14, 3, 1, 1, 3),
        new("l4.s2", 256, 512, 14, 3, 2, 1, 1),
        new("l4.ds", 256, 512, 14, 1, 2, 0, 1),
        new("l4", 512, 512, 7, 3, 1, 1, 3),
    ];

    /// <summary>Our forward versions by name; a version that does not compute a shape is skipped for it.</summary>
    static readonly Dictionary<string, (Func<ConvShape, bool> Supports, Conv2d.ForwardVersion Run)> Versions = new()
    {
        ["auto"] = (_ => true, Conv2d.ForwardHost),
        // The dispatch rule before this benchmark existed (Winograd on every 3x3 stride-1 layer with C ≥ 64, V2 for
        // the rest), so one run shows what the current rule gained.
        ["auto0"] = (_ => true, (y, x, w, b, s, relu) =>
        {
            if (Conv2d.WinogradSupports(s) && s.C >= 64)
            {
                if (Conv2d.Winograd4x4FewerMultiplies(s)) Conv2d.ForwardHost_V4Winograd4x4(y, x, w, b, s, relu);
                else Conv2d.ForwardHost_V3Winograd(y, x, w, b, s, relu);
            }
            else Conv2d.ForwardHost_V2Im2colGemm(y, x, w, b, s, relu);
        }),
        ["v1"] = (_ => true, Conv2d.ForwardHost_V1Naive),
        ["v2"] = (_ => true, Conv2d.ForwardHost_V2Im2colGemm),
        ["v3"] = (Conv2d.WinogradSupports, Conv2d.ForwardHost_V3Winograd),
        ["v4"] = (Conv2d.WinogradSupports, Conv2d.ForwardHost_V4Winograd4x4),
        ["v5"] = (_ => true, Conv2d.ForwardHost_V5BatchedGemm),
    };

    const double Tolerance = 1e-4;

    public int Run(string[] args)
    {
        int[] batches = [1, 8];
        int reps = 7;
        string[] versions = ["auto", "auto0", "v2", "v3", "v4", "v5"];
        string[]? only = null;
        for (int i = 0; i < args.Length; i++)
            switch (args[i])
            {
                case "--batch": batches = args[++i].Split(',').Select(int.Parse).ToArray(); break;
                case "--reps": reps = int.Parse(args[++i]); break;
                case "--versions": versions = args[++i].Split(','); break;
                case "--only": only = args[++i].Split(','); break;
                default: Console.Error.WriteLine($"resnet18-convs: unknown argument '{args[i]}'"); return 2;
            }
        foreach (var v in versions)
            if (!Versions.ContainsKey(v))
            {
                Console.Error.WriteLine($"resnet18-convs --versions: unknown version '{v}' (known: {string.Join(", ", Versions.Keys)})");
                return 2;
            }
        Console.WriteLine($"device: host CPU, {Environment.ProcessorCount} cores, AVX2 {Avx2.IsSupported}, FMA {Fma.IsSupported}, " +
                          $"AVX-512F {Avx512F.IsSupported}; fp32; onnxruntime {OrtEnv.Instance().GetVersionString()} " +
                          $"(CPU EP, {Environment.ProcessorCount} intra-op threads, ORT_ENABLE_ALL); median of {reps} rounds");
        bool ok = true;
        foreach (int batch in batches) ok &= RunBatch(batch, reps, versions, only);
        Console.WriteLine("\n(ratio = median over rounds of ours / ORT measured back to back; < 1 means we are faster. " +
                          "The machine is shared: compare ratios, not absolute times)");
        return ok ? 0 : 1;
    }

    static bool RunBatch(int batch, int reps, string[] versions, string[]? only)
    {
        Console.WriteLine($"\nbatch {batch}: conv + bias + ReLU; ms per call, GFLOP/s (2·K·C·R·S per output), ratio vs ORT");
        var totals = new double[versions.Length];
        var counted = new bool[versions.Length];
        Array.Fill(counted, true);
        double totalOrt = 0, totalFlops = 0;
        bool ok = true;
        var rng = new Random(18);
        float[] Rand(long n, float scale) { var v = new float[n]; for (long i = 0; i < n; i++) v[i] = scale * (2 * rng.NextSingle() - 1); return v; }
        foreach (var layer in Layers)
        {
            if (only != null && !only.Contains(layer.Name)) continue;
            var s = ConvShape.Square(batch, layer.C, layer.Hw, layer.Hw, layer.K, layer.Kernel, layer.Stride, layer.Pad);
            var x = Rand(s.InputLength, 1f);
            // He-like scale so outputs stay O(1) whatever C·R·S is; random biases so a dropped bias shows.
            var w = Rand(s.WeightLength, (float)Math.Sqrt(3.0 / (layer.C * layer.Kernel * layer.Kernel)));
            var b = Rand(s.K, 0.5f);
            var yOrt = new float[s.OutputLength];
            using var ort = new OrtConv(s, w, b, x, yOrt);
            ort.Run();

            var active = new List<int>();
            var outputs = new List<float[]>();
            for (int vi = 0; vi < versions.Length; vi++)
            {
                var (supports, run) = Versions[versions[vi]];
                if (!supports(s)) { counted[vi] = false; continue; }
                var y = new float[s.OutputLength];
                run(y, x, w, b, s, true);
                double err = MaxRelativeError(y, yOrt);
                if (err > Tolerance)
                {
                    Console.WriteLine($"  {layer.Name,-6} {versions[vi],-5} MISMATCH vs ORT: max |Δ| / max |ORT| = {err:0.0e+0} > {Tolerance:0e+0}; not timed");
                    ok = false;
                    counted[vi] = false;
                    continue;
                }
                active.Add(vi);
                outputs.Add(y);
            }

            // Enough calls per sample that one sample lasts ~20 ms (timer and scheduler noise), at least 1.
            long t0 = Stopwatch.GetTimestamp();
            ort.Run();
            double once = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            int inner = (int)Math.Clamp(0.02 / Math.Max(once, 1e-6), 1, 200);
            var engines = new List<(string Name, Action Pass)>();
            for (int a = 0; a < active.Count; a++)
            {
                var run = Versions[versions[active[a]]].Run;
                var y = outputs[a];
                engines.Add((versions[active[a]], () => run(y, x, w, b, s, true)));
            }
            engines.Add(("ort", ort.Run));
            var times = engines.Select(_ => new double[reps]).ToArray();
            foreach (var e in engines) e.Pass(); // warm-up
            for (int r = 0; r < reps; r++)
                // Each round starts with a different engine, so none is always the one that runs after ORT.
                for (int o = 0; o < engines.Count; o++)
                {
                    int e = (o + r) % engines.Count;
                    // ORT's intra-op threads spin for a while after a run returns, and so do idle .NET pool threads:
                    // without a pause the engine timed next would share the cores with them.
                    Thread.Sleep(15);
                    long s0 = Stopwatch.GetTimestamp();
                    for (int i = 0; i < inner; i++) engines[e].Pass();
                    times[e][r] = Stopwatch.GetElapsedTime(s0).TotalSeconds / inner;
                }
            double ortMed = Median(times[^1]);
            totalOrt += ortMed * layer.Count;
            totalFlops += s.ForwardFlops * layer.Count;
            string shape = $"C{layer.C,-3} K{layer.K,-3} {layer.Hw,3}² {layer.Kernel}x{layer.Kernel} s{layer.Stride} x{layer.Count}";
            Console.WriteLine($"  {layer.Name,-6} {shape}  ort   {ortMed * 1e3,8:F3} ms {s.ForwardFlops / ortMed / 1e9,6:F1} GFLOP/s");
            for (int a = 0; a < active.Count; a++)
            {
                double med = Median(times[a]);
                double ratio = Median(times[a].Zip(times[^1], (o, t) => o / t).ToArray());
                totals[active[a]] += med * layer.Count;
                Console.WriteLine($"  {layer.Name,-6} {shape}  {versions[active[a]],-5} {med * 1e3,8:F3} ms {s.ForwardFlops / med / 1e9,6:F1} GFLOP/s  ratio {ratio,5:F2}  " +
                                  $"(err {MaxRelativeError(outputs[a], yOrt):0.0e+0})");
            }
        }
        Console.WriteLine($"  total (each shape x its count): ort {totalOrt * 1e3:F2} ms = {totalOrt * 1e3 / batch:F2} ms/image, {totalFlops / totalOrt / 1e9:F1} GFLOP/s");
        for (int vi = 0; vi < versions.Length; vi++)
            if (counted[vi])
                Console.WriteLine($"  total {versions[vi],-5} {totals[vi] * 1e3:F2} ms = {totals[vi] * 1e3 / batch:F2} ms/image, {totalFlops / totals[vi] / 1e9:F1} GFLOP/s, " +
                                  $"ratio vs ORT {totals[vi] / totalOrt:F2}");
            else
                Console.WriteLine($"  total {versions[vi],-5} n/a (does not compute every selected shape)");
        return ok;
    }

    static double Median(double[] v)
    {
        var c = (double[])v.Clone();
        Array.Sort(c);
        return c.Length % 2 == 1 ? c[c.Length / 2] : 0.5 * (c[c.Length / 2 - 1] + c[c.Length / 2]);
    }

    /// <summary>max |y - reference| / max |reference|.</summary>
    static double MaxRelativeError(float[] y, float[] reference)
    {
        double err = 0, max = 0;
        for (int i = 0; i < y.Length; i++)
        {
            err = Math.Max(err, Math.Abs((double)y[i] - reference[i]));
            max = Math.Max(max, Math.Abs((double)reference[i]));
        }
        return double.IsNaN(err) ? double.PositiveInfinity : err / Math.Max(max, 1e-30);
    }

    /// <summary>An ORT session of one Conv (+ bias) and Relu node over preallocated input and output buffers.</summary>
    sealed class OrtConv : IDisposable
    {
        readonly SessionOptions options;
        readonly InferenceSession session;
        readonly OrtValue input, output;
        readonly RunOptions runOptions = new();
        static readonly string[] InNames = ["x"], OutNames = ["y"];

        public OrtConv(ConvShape s, float[] w, float[] b, float[] x, float[] y)
        {
            options = new SessionOptions
            {
                GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
                IntraOpNumThreads = Environment.ProcessorCount,
            };
            options.AppendExecutionProvider_CPU();
            session = new InferenceSession(ConvReluModel(s, w, b).ToByteArray(), options);
            input = OrtValue.CreateTensorValueFromMemory(x, [s.N, s.C, s.H, s.W]);
            output = OrtValue.CreateTensorValueFromMemory(y, [s.N, s.K, s.OutH, s.OutW]);
        }

        public void Run() => session.Run(runOptions, InNames, [input], OutNames, [output]);

        public void Dispose()
        {
            input.Dispose(); output.Dispose(); runOptions.Dispose(); session.Dispose(); options.Dispose();
        }
    }

    /// <summary>x (N, C, H, W) → Conv(W, B) → Relu → y, opset 17, weights as initializers.</summary>
    static Onnx.ModelProto ConvReluModel(ConvShape s, float[] w, float[] b)
    {
        static Onnx.ValueInfoProto Value(string name, params long[] dims)
        {
            var shape = new Onnx.TensorShapeProto();
            foreach (long d in dims) shape.Dim.Add(new Onnx.TensorShapeProto.Types.Dimension { DimValue = d });
            return new Onnx.ValueInfoProto
            {
                Name = name,
                Type = new Onnx.TypeProto { TensorType = new Onnx.TypeProto.Types.Tensor { ElemType = (int)Onnx.TensorProto.Types.DataType.Float, Shape = shape } },
            };
        }
        static Onnx.TensorProto Initializer(string name, float[] data, params long[] dims)
        {
            var t = new Onnx.TensorProto { Name = name, DataType = (int)Onnx.TensorProto.Types.DataType.Float };
            t.Dims.AddRange(dims);
            var bytes = new byte[data.Length * sizeof(float)];
            Buffer.BlockCopy(data, 0, bytes, 0, bytes.Length);
            t.RawData = ByteString.CopyFrom(bytes);
            return t;
        }
        static Onnx.AttributeProto Ints(string name, params long[] values)
        {
            var a = new Onnx.AttributeProto { Name = name, Type = Onnx.AttributeProto.Types.AttributeType.Ints };
            a.Ints.AddRange(values);
            return a;
        }
        var conv = new Onnx.NodeProto { Name = "conv", OpType = "Conv" };
        conv.Input.AddRange(["x", "w", "b"]);
        conv.Output.Add("c");
        conv.Attribute.Add(Ints("kernel_shape", s.R, s.S));
        conv.Attribute.Add(Ints("strides", s.StrideH, s.StrideW));
        conv.Attribute.Add(Ints("pads", s.PadH, s.PadW, s.PadH, s.PadW));
        conv.Attribute.Add(Ints("dilations", 1, 1));
        var relu = new Onnx.NodeProto { Name = "relu", OpType = "Relu" };
        relu.Input.Add("c");
        relu.Output.Add("y");
        var graph = new Onnx.GraphProto { Name = "conv_relu" };
        graph.Node.Add(conv);
        graph.Node.Add(relu);
        graph.Initializer.Add(Initializer("w", w, s.K, s.C, s.R, s.S));
        graph.Initializer.Add(Initializer("b", b, s.K));
        graph.Input.Add(Value("x", s.N, s.C, s.H, s.W));
        graph.Output.Add(Value("y", s.N, s.K, s.OutH, s.OutW));
        var model = new Onnx.ModelProto { IrVersion = 8, ProducerName = "tp7-bench", Graph = graph };
        model.OpsetImport.Add(new Onnx.OperatorSetIdProto { Domain = "", Version = 17 });
        return model;
    }
}
