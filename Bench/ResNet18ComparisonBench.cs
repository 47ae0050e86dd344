using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Tp7.Engine.Devices;
using Tp7.Engine.Imaging;
using Tp7.Engine.Model;
using Tp7.Engine.Onnx;

namespace Tp7.Bench;

/// <summary>
/// ResNet18 forward (the NuGet package's ImageNet-trained network, imported from ONNX) on the CPU: our host backend
/// against ONNX Runtime running the same file (CPU execution provider, default threads, ORT_ENABLE_ALL), for each
/// batch size. The file fixes the batch at 1; ONNX Runtime gets a copy whose batch dimension is free, so both
/// engines run whole batches. Outputs are compared before anything is timed; timed passes alternate ours, ORT,
/// ours, ... so load from other processes falls on both alike.
/// Args: [--batch 1,8] [--reps 5] [--seed 0] [--profile]
/// </summary>
public sealed class ResNet18ComparisonBench : IBenchmark
{
    public string Name => "resnet18-cpu";
    public string Description => "ResNet18 forward on the CPU: host backend vs ONNX Runtime (validated, interleaved), batch 1 and 8";

    const double Tolerance = 1e-4, Goal = 1.0;

    public int Run(string[] args)
    {
        try { return RunChecked(args); }
        catch (Exception e) when (e is ArgumentException or IOException or InvalidOperationException or OnnxRuntimeException or OnnxFormatException)
        {
            Console.Error.WriteLine($"resnet18-cpu: {e.Message}");
            return 1;
        }
    }

    int RunChecked(string[] args)
    {
        int reps = 5, seed = 0;
        int[] batches = [1, 8];
        bool profile = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--batch":
                    batches = Next().Split(',').Select(s => int.TryParse(s, CultureInfo.InvariantCulture, out var v) && v > 0 ? v
                        : throw new ArgumentException($"--batch: '{s}' is not a positive integer")).ToArray();
                    break;
                case "--reps": reps = int.TryParse(Next(), CultureInfo.InvariantCulture, out var r) && r > 0 ? r : throw new ArgumentException("--reps must be a positive integer"); break;
                case "--seed": seed = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--profile": profile = true; break;
                default: Console.Error.WriteLine($"resnet18-cpu: unknown argument '{args[i]}'"); return 2;
            }
        }

        var (netPath, _) = ModelCatalog.FindResNet18();
        using var host = new HostDevice();
        Console.WriteLine($"ResNet18 forward (network only, {Path.GetFileName(netPath)}), fp32, 224x224, warm-up 1 + {reps} timed passes per engine, interleaved");
        Console.WriteLine($"machine: {host.Name}, {Environment.ProcessorCount} cores ({host.Describe()}); load average before: {LoadAverage()}");
        using var model = new ImageModel(host, OnnxImporter.Load(netPath), "resnet18", ModelCatalog.ResNet18Preprocessing);
        string output = model.Graph.Output;
        double flops = model.ForwardFlops(224);

        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        options.AppendExecutionProvider_CPU();
        using var ort = new InferenceSession(FreeBatch(netPath), options);
        Console.WriteLine($"onnxruntime {OrtEnv.Instance().GetVersionString()} (CPU execution provider, default thread settings, ORT_ENABLE_ALL)");
        Console.WriteLine($"{"batch",5} {"ours ms/img",12} {"ORT ms/img",11} {"ours/ORT",9} {"ours GFLOP/s",13} {"max|diff|/max",14}");
        bool allOk = true;
        foreach (int n in batches)
        {
            var rng = new Random(seed);
            var x = new float[n * 3 * 224 * 224];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 255 - 128); // a mean-subtracted image's range
            var input = OrtValue.CreateTensorValueFromMemory(x, [n, 3, 224, 224]);
            var ortOut = new float[n * 512];
            var outValue = OrtValue.CreateTensorValueFromMemory(ortOut, [n, 512, 1, 1]);
            using var runOptions = new RunOptions();
            void OrtPass() => ort.Run(runOptions, [ort.InputNames[0]], [input], [ort.OutputNames[0]], [outValue]);
            float[] ours = model.Forward(x, n, 224, 224, [output])[output];
            OrtPass();
            double max = ortOut.Max(v => Math.Abs(v)), err = 0;
            for (int i = 0; i < ours.Length; i++) err = Math.Max(err, Math.Abs(ours[i] - ortOut[i]));
            if (err > Tolerance * max)
            {
                Console.Error.WriteLine($"resnet18-cpu: batch {n}: outputs differ by {err / max:E2} of max |value|; not timing");
                return 1;
            }
            var tOurs = new List<double>();
            var tOrt = new List<double>();
            for (int r = 0; r < reps; r++)
            {
                long t0 = Stopwatch.GetTimestamp();
                model.Forward(x, n, 224, 224, [output]);
                tOurs.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
                t0 = Stopwatch.GetTimestamp();
                OrtPass();
                tOrt.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
            }
            double a = Median(tOurs), b = Median(tOrt);
            allOk &= a / b <= Goal;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{n,5} {a / n * 1e3,12:F1} {b / n * 1e3,11:F1} {a / b,9:F2} {flops * n / a / 1e9,13:F1} {err / max,14:E1}"));
            input.Dispose();
            outValue.Dispose();
        }
        Console.WriteLine($"load average after: {LoadAverage()}");
        Console.WriteLine($"goal: ours/ORT <= {Goal:F1} at every batch: {(allOk ? "met" : "NOT met")}");
        if (profile)
        {
            model.Profiler = new LayerProfiler();
            var x = new float[batches.Max() * 3 * 224 * 224];
            model.Forward(x, batches.Max(), 224, 224, [output]);
            foreach (var row in model.Profiler.Summary().OrderByDescending(r => r.Seconds).Take(25))
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{row.Layer,-28} {row.Op,-14} {row.Shape,-20} {row.Seconds * 1e3,8:F2} ms {row.GFlops,7:F1} GFLOP/s"));
            model.Profiler = null;
        }
        return 0;
    }

    /// <summary>The model with its batch dimension free (dim_param "N") on the input, the outputs and every value_info.</summary>
    static byte[] FreeBatch(string path)
    {
        var m = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        foreach (var v in m.Graph.Input.Concat(m.Graph.Output))
            if (v.Type?.TensorType?.Shape is { Dim.Count: > 0 } s && m.Graph.Initializer.All(t => t.Name != v.Name))
                s.Dim[0] = new global::Onnx.TensorShapeProto.Types.Dimension { DimParam = "N" };
        m.Graph.ValueInfo.Clear();
        return m.ToByteArray();
    }

    static double Median(List<double> t)
    {
        var s = t.Order().ToArray();
        return s[s.Length / 2];
    }

    static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";
}
