using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Tp7.Engine.Devices;
using Tp7.Engine.Model;

namespace Tp7.Bench;

/// <summary>
/// VGG16 forward to the logits on the CPU, our host backend against the two engines a user would otherwise pick:
/// ONNX Runtime (CPU execution provider, default threads, ORT_ENABLE_ALL) and PyTorch (tools/torch_forward_bench.py
/// in a child process, all cores, eval + no_grad). All three take the same seeded batch with the same weights; their
/// logits are compared before anything is timed. Timed passes run one engine at a time, interleaved round by round
/// (ours, ORT, PyTorch, ours, ...), so load from other processes falls on all three alike.
/// Args: [--batch 8] [--reps 5] [--weights PATH] [--onnx PATH] [--python PATH] [--seed 0] [--profile]
/// (--profile: afterwards, 3 to 5 more passes of ours synchronised per layer, alternating with passes of a second ONNX Runtime
/// session under ORT's own per-node profiler, printed as one per-layer table of medians).
/// </summary>
public sealed class ForwardComparisonBench : IBenchmark
{
    public string Name => "forward-cpu";
    public string Description => "VGG16 forward on the CPU: host backend vs ONNX Runtime vs PyTorch (validated, interleaved)";

    const int Size = 224, Classes = 1000;
    // Logits must agree to this fraction of their largest magnitude (fp32 with different summation orders).
    const double Tolerance = 1e-4;
    const double Goal = 0.8; // our time / PyTorch's time, from the issue
    const double OrtGoal = 0.8; // our time / ONNX Runtime's time, at batch 8 and at batch 1 (issue 10)

    sealed record EngineTimes(string Name, List<double> Wall, List<double> Cpu);

    public int Run(string[] args)
    {
        try { return RunChecked(args); }
        catch (Exception e) when (e is ArgumentException or IOException or InvalidOperationException or InvalidDataException
                                      or OnnxRuntimeException or JsonException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"forward-cpu: {e.Message}");
            return 1;
        }
    }

    int RunChecked(string[] args)
    {
        int batch = 8, reps = 5, seed = 0;
        bool profile = false;
        string? weightsArg = null, onnxArg = null, python = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--batch": batch = PositiveInt("--batch", Next()); break;
                case "--reps": reps = PositiveInt("--reps", Next()); break;
                case "--seed": seed = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--weights": weightsArg = Next(); break;
                case "--onnx": onnxArg = Next(); break;
                case "--python": python = Next(); break;
                case "--profile": profile = true; break;
                default: Console.Error.WriteLine($"forward-cpu: unknown argument '{args[i]}'"); return 2;
            }
        }

        string root = RepositoryRoot();
        string weightsPath = Path.GetFullPath(weightsArg ?? DefaultWeights());
        string onnxPath = Path.GetFullPath(onnxArg ?? DefaultOnnx(root, weightsPath, weightsArg == null));
        if (!File.Exists(weightsPath)) throw new FileNotFoundException($"{weightsPath}: no such weights file; {WeightsLocator.HowToGet}");
        python ??= File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        string torchScript = Path.Combine(root, "tools", "torch_forward_bench.py");

        double flopsPerImage = FlopsPerImage();
        using var host = new HostDevice();
        Console.WriteLine($"VGG16 forward to logits, fp32, batch {batch} of {Size}x{Size}, warm-up 1 + {reps} timed passes per engine, interleaved");
        Console.WriteLine($"machine: {host.Name}, {Environment.ProcessorCount} cores ({host.Describe()})");
        Console.WriteLine($"load average before: {LoadAverage()}");
        Console.WriteLine($"weights: {weightsPath}");

        if (!File.Exists(onnxPath)) ExportOnnx(python, root, weightsPath, onnxPath);
        Console.WriteLine($"onnx: {onnxPath}");

        var x = SeededInput(batch, seed);
        string tmp = Directory.CreateTempSubdirectory("tp7-forward-cpu-").FullName;
        try
        {
            string inputFile = Path.Combine(tmp, "input.f32"), torchLogitsFile = Path.Combine(tmp, "logits-torch.f32");
            WriteRawFloats(inputFile, x);

            // PyTorch loads its model in its own process while we load ours; nothing is timed until it is ready.
            using var torch = TorchServer.Start(python, torchScript, weightsPath, inputFile, torchLogitsFile, batch);

            long t0 = Stopwatch.GetTimestamp();
            using var model = new ImageModel(host, WeightsLocator.Load(weightsPath));
            Console.WriteLine($"ours: {model.WeightsSource} loaded in {Stopwatch.GetElapsedTime(t0).TotalSeconds:F1} s");

            using var sessionOptions = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
            sessionOptions.AppendExecutionProvider_CPU();
            t0 = Stopwatch.GetTimestamp();
            using var ort = new InferenceSession(onnxPath, sessionOptions);
            Console.WriteLine($"onnxruntime {OrtEnv.Instance().GetVersionString()}: session created in {Stopwatch.GetElapsedTime(t0).TotalSeconds:F1} s " +
                              $"(CPU execution provider, default thread settings, ORT_ENABLE_ALL)");
            using var ortRunner = new OrtRunner(ort, x, batch);
            var ortRun = ortRunner.Run;

            // ---- validate (these passes are also each engine's first, untimed pass)
            var oursLogits = model.Forward(x, batch, Size, Size, ["fc8"])["fc8"];
            var ortLogits = ortRun();
            var ready = torch.WaitReady();
            Console.WriteLine($"pytorch {ready.GetProperty("torch").GetString()}: {ready.GetProperty("threads").GetInt32()} threads, " +
                              $"model loaded in {ready.GetProperty("load_s").GetDouble():F1} s");
            var torchLogits = ReadRawFloats(torchLogitsFile, batch * Classes);
            bool ok = true;
            ok &= Compare("ours vs pytorch", oursLogits, torchLogits);
            ok &= Compare("onnxruntime vs pytorch", ortLogits, torchLogits);
            ok &= Compare("ours vs onnxruntime", oursLogits, ortLogits);
            if (!ok)
            {
                Console.Error.WriteLine($"forward-cpu: logits disagree beyond {Tolerance:0e+0} of max |logit|; not timing. " +
                                        $"If {onnxPath} was exported from other weights than {weightsPath}, delete it and rerun (it is re-exported)");
                return 1;
            }

            // ---- time: warm-up 1 per engine, then reps rounds of (ours, ORT, PyTorch)
            var engines = new (EngineTimes Times, Func<(double Wall, double Cpu)> Pass)[]
            {
                (new("ours (host backend)", [], []), () => InProcess(() => model.Forward(x, batch, Size, Size, ["fc8"]))),
                (new("onnxruntime", [], []), () => InProcess(() => ortRun())),
                (new("pytorch", [], []), torch.TimedPass),
            };
            foreach (var e in engines) e.Pass();
            for (int r = 0; r < reps; r++)
                foreach (var e in engines)
                {
                    var (wall, cpu) = e.Pass();
                    e.Times.Wall.Add(wall);
                    e.Times.Cpu.Add(cpu);
                }
            Console.WriteLine($"load average after:  {LoadAverage()}");
            Report(engines.Select(e => e.Times).ToList(), batch, flopsPerImage);
            if (profile)
            {
                // After the timed rounds, so that per-layer synchronisation never touches the numbers above. Ours and
                // ONNX Runtime (its own per-node profiler, in a second session) alternate pass by pass, as above.
                using var ortProfiled = OrtProfiler.Create(onnxPath, x, batch);
                ortProfiled.Run(); // warm-up
                int passes = Math.Max(3, Math.Min(reps, 5));
                var ours = new List<IReadOnlyList<(string Layer, string Op, string Shape, int Calls, double Seconds, double GFlops, double GBytes)>>();
                for (int p = 0; p < passes; p++)
                {
                    model.Profiler = new LayerProfiler();
                    model.Forward(x, batch, Size, Size, ["fc8"]);
                    ours.Add(model.Profiler.Summary());
                    ortProfiled.Run();
                }
                model.Profiler = null;
                PrintProfile(ours, ortProfiled.End(), batch, passes);
            }
            return 0;
        }
        finally
        {
            try { Directory.Delete(tmp, recursive: true); } catch (IOException) { }
        }
    }

    // ------------------------------------------------------------------------------------------------ engines

    /// <summary>ONNX Runtime passes over one batch; input and output stay in preallocated buffers, as a tuned caller keeps them.</summary>
    sealed class OrtRunner : IDisposable
    {
        readonly InferenceSession session;
        readonly string[] inNames, outNames;
        readonly float[] logits; // (batch, 1000)
        readonly OrtValue input, output;
        readonly RunOptions runOptions = new();

        public OrtRunner(InferenceSession session, float[] x, int batch)
        {
            this.session = session;
            inNames = [session.InputNames[0]];
            outNames = [session.OutputNames[0]];
            logits = new float[batch * Classes];
            input = OrtValue.CreateTensorValueFromMemory(x, [batch, 3, Size, Size]);
            output = OrtValue.CreateTensorValueFromMemory(logits, [batch, Classes]);
        }

        public float[] Run()
        {
            session.Run(runOptions, inNames, [input], outNames, [output]);
            return (float[])logits.Clone();
        }

        public void Dispose() { input.Dispose(); output.Dispose(); runOptions.Dispose(); }
    }

    /// <summary>Wall seconds and process CPU seconds (all threads) of one in-process pass.</summary>
    static (double Wall, double Cpu) InProcess(Action pass)
    {
        var proc = Process.GetCurrentProcess();
        var cpu0 = proc.TotalProcessorTime;
        long t0 = Stopwatch.GetTimestamp();
        pass();
        double wall = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        proc.Refresh();
        return (wall, (proc.TotalProcessorTime - cpu0).TotalSeconds);
    }

    /// <summary>tools/torch_forward_bench.py --serve: one JSON line per `time` request on stdin.</summary>
    sealed class TorchServer : IDisposable
    {
        readonly Process process;
        readonly string what;
        JsonElement? ready;

        TorchServer(Process process, string what) { this.process = process; this.what = what; }

        public static TorchServer Start(string python, string script, string weights, string input, string logitsOut, int batch)
        {
            if (!File.Exists(script)) throw new FileNotFoundException($"{script}: the PyTorch side of the benchmark is missing");
            var psi = new ProcessStartInfo(python)
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = false, UseShellExecute = false,
            };
            foreach (var a in new[] { script, "--weights", weights, "--input", input, "--logits-out", logitsOut,
                                      "--batch", batch.ToString(CultureInfo.InvariantCulture), "--serve" })
                psi.ArgumentList.Add(a);
            string what = $"{python} {Path.GetFileName(script)}";
            try
            {
                return new TorchServer(Process.Start(psi) ?? throw new InvalidOperationException($"{what}: could not start"), what);
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new InvalidOperationException($"{python}: cannot run ({e.Message}); PyTorch 1.13 is needed (apt-get install python3-torch python3-torchvision), or pass --python");
            }
        }

        JsonElement ReadJson()
        {
            string? line = process.StandardOutput.ReadLine();
            if (line == null)
            {
                process.WaitForExit();
                throw new InvalidOperationException($"{what}: exited with code {process.ExitCode} (its error is printed above)");
            }
            var json = JsonDocument.Parse(line).RootElement;
            if (json.TryGetProperty("error", out var err)) throw new InvalidOperationException($"{what}: {err.GetString()}");
            return json;
        }

        public JsonElement WaitReady() => ready ??= ReadJson();

        /// <summary>Wall seconds measured inside the child around the forward call (no pipe latency), and its CPU seconds.</summary>
        public (double Wall, double Cpu) TimedPass()
        {
            WaitReady();
            process.StandardInput.WriteLine("time");
            process.StandardInput.Flush();
            var json = ReadJson();
            return (json.GetProperty("seconds").GetDouble(), json.GetProperty("cpu_seconds").GetDouble());
        }

        public void Dispose()
        {
            try
            {
                if (!process.HasExited)
                {
                    process.StandardInput.WriteLine("quit");
                    process.StandardInput.Close();
                    if (!process.WaitForExit(10_000)) process.Kill();
                }
            }
            catch (IOException) { }
            process.Dispose();
        }
    }

    static void ExportOnnx(string python, string root, string weights, string onnx)
    {
        string script = Path.Combine(root, "tools", "export_onnx.py");
        Console.WriteLine($"onnx: {onnx} is missing; exporting it from the same weights: {python} {script} --weights {weights} --out {onnx}");
        var psi = new ProcessStartInfo(python) { UseShellExecute = false };
        foreach (var a in new[] { script, "--weights", weights, "--out", onnx }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"{python}: could not start");
        p.WaitForExit();
        if (p.ExitCode != 0 || !File.Exists(onnx))
            throw new InvalidOperationException($"{script}: exit code {p.ExitCode}, {onnx} not written (see its error above)");
    }

    // ------------------------------------------------------------------------------------------------ report

    static bool Compare(string what, float[] actual, float[] reference)
    {
        double maxRef = 0, maxErr = 0;
        int worst = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            maxRef = Math.Max(maxRef, Math.Abs(reference[i]));
            double d = Math.Abs((double)actual[i] - reference[i]);
            if (d > maxErr) { maxErr = d; worst = i; }
        }
        double rel = maxErr / Math.Max(maxRef, 1e-30);
        bool ok = rel <= Tolerance;
        Console.WriteLine($"validate {what,-24} max |diff| {maxErr:0.00e+0} = {rel:0.00e+0} of max |logit| {maxRef:0.00e+0} " +
                          $"(worst: image {worst / Classes}, class {worst % Classes}: {actual[worst]:G7} vs {reference[worst]:G7}) {(ok ? "ok" : "MISMATCH")}");
        return ok;
    }

    static void Report(List<EngineTimes> engines, int batch, double flopsPerImage)
    {
        static double Median(List<double> v) { var s = v.Order().ToArray(); return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2; }
        var ours = engines[0];
        var ort = engines[1];
        var torch = engines[2];
        double torchMed = Median(torch.Wall), ortMed = Median(ort.Wall);

        Console.WriteLine();
        Console.WriteLine($"{"engine",-20} {"median s/batch",14} {"min s/batch",11} {"s/image",8} {"img/s",6} {"GFLOP/s",8} {"CPU s/batch",11} {"÷ PyTorch",9} {"÷ ORT",6}");
        foreach (var e in engines)
        {
            double med = Median(e.Wall);
            Console.WriteLine($"{e.Name,-20} {med,14:F3} {e.Wall.Min(),11:F3} {med / batch,8:F3} {batch / med,6:F2} {flopsPerImage * batch / med / 1e9,8:F1} " +
                              $"{Median(e.Cpu),11:F2} {med / torchMed,9:F2} {med / ortMed,6:F2}");
        }
        // Paired ratios: each round's passes ran back to back, so the ratio within a round cancels slow drift in load.
        var vsTorch = ours.Wall.Zip(torch.Wall, (a, b) => a / b).ToList();
        var vsOrt = ours.Wall.Zip(ort.Wall, (a, b) => a / b).ToList();
        Console.WriteLine();
        Console.WriteLine($"ours / PyTorch: {Median(ours.Wall) / torchMed:F2} (median of per-round ratios {Median(vsTorch):F2}, range {vsTorch.Min():F2}–{vsTorch.Max():F2}); " +
                          $"goal ≤ {Goal:F1}: {(Median(ours.Wall) / torchMed <= Goal ? "met" : "NOT met")}");
        Console.WriteLine($"ours / ONNX Runtime: {Median(ours.Wall) / ortMed:F2} (median of per-round ratios {Median(vsOrt):F2}, range {vsOrt.Min():F2}–{vsOrt.Max():F2}); " +
                          $"goal ≤ {OrtGoal:F1}: {(Median(ours.Wall) / ortMed <= OrtGoal ? "met" : "NOT met")}");
        Console.WriteLine($"GFLOP/s counts {flopsPerImage / 1e9:F2} GFLOP per image (2 x multiply-adds of every conv and linear layer). " +
                          "CPU s/batch is CPU time of all the engine's threads, spin-waiting included; on a busy machine wall time " +
                          "is inflated and only the ratios measured in the same run compare.");
    }

    /// <summary>
    /// A second ONNX Runtime session with ORT's profiler on (the same options as the timed one): per-node kernel
    /// times of each pass, read back from the JSON trace that <see cref="InferenceSession.EndProfiling"/> writes.
    /// </summary>
    sealed class OrtProfiler : IDisposable
    {
        readonly SessionOptions options;
        readonly InferenceSession session;
        readonly OrtRunner runner;

        OrtProfiler(SessionOptions options, InferenceSession session, OrtRunner runner)
        { this.options = options; this.session = session; this.runner = runner; }

        public static OrtProfiler Create(string onnxPath, float[] x, int batch)
        {
            string prefix = Path.Combine(Path.GetTempPath(), $"tp7-ort-profile-{Environment.ProcessId}");
            var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, EnableProfiling = true, ProfileOutputPathPrefix = prefix };
            options.AppendExecutionProvider_CPU();
            var session = new InferenceSession(onnxPath, options);
            return new OrtProfiler(options, session, new OrtRunner(session, x, batch));
        }

        public void Run() => runner.Run();

        /// <summary>Per node in execution order: (node name, op type, kernel seconds of each pass but the first, the warm-up).</summary>
        public List<(string Node, string Op, List<double> Seconds)> End()
        {
            string file = session.EndProfiling();
            try
            {
                using var json = JsonDocument.Parse(File.ReadAllText(file));
                var nodes = new List<(string Node, string Op, List<double> Seconds)>();
                var index = new Dictionary<string, int>();
                foreach (var ev in json.RootElement.EnumerateArray())
                {
                    if (ev.GetProperty("cat").GetString() != "Node") continue;
                    string name = ev.GetProperty("name").GetString() ?? "";
                    if (!name.EndsWith("_kernel_time", StringComparison.Ordinal)) continue;
                    name = name[..^"_kernel_time".Length];
                    string op = ev.TryGetProperty("args", out var a) && a.TryGetProperty("op_name", out var o) ? o.GetString() ?? "" : "";
                    if (!index.TryGetValue(name, out int i)) { index[name] = i = nodes.Count; nodes.Add((name, op, [])); }
                    nodes[i].Seconds.Add(ev.GetProperty("dur").GetDouble() * 1e-6);
                }
                foreach (var n in nodes) n.Seconds.RemoveAt(0); // the warm-up pass
                return nodes;
            }
            finally { try { File.Delete(file); } catch (IOException) { } }
        }

        public void Dispose() { runner.Dispose(); session.Dispose(); options.Dispose(); }
    }

    static double MedianOf(IEnumerable<double> values)
    {
        var s = values.Order().ToArray();
        return s.Length == 0 ? 0 : s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    /// <summary>
    /// Ours per layer (median over the profiled passes) beside ONNX Runtime's nodes. ORT's nodes carry the exporter's
    /// names (/features/features.0/Conv ...) and its fusions (Conv+Relu as one FusedConv, Flatten and the identities
    /// gone); layers with weights pair up in order (the 13 convolutions, then the 3 linear layers), the rest by kind.
    /// </summary>
    static void PrintProfile(List<IReadOnlyList<(string Layer, string Op, string Shape, int Calls, double Seconds, double GFlops, double GBytes)>> ours,
        List<(string Node, string Op, List<double> Seconds)> ort, int batch, int passes)
    {
        var layers = ours[0].Select((r, i) => (r.Layer, r.Op, r.Shape, Seconds: MedianOf(ours.Select(p => p[i].Seconds)),
            Flops: r.GFlops * r.Seconds * 1e9)).ToList();
        var ortMed = ort.Select(n => (n.Node, n.Op, Seconds: MedianOf(n.Seconds))).ToList();
        // Pair weighted layers in order, pools in order; whatever is left of ORT's is listed below the table.
        var ortConvs = new Queue<int>(Enumerable.Range(0, ortMed.Count).Where(i => ortMed[i].Op.Contains("Conv", StringComparison.Ordinal)));
        var ortGemms = new Queue<int>(Enumerable.Range(0, ortMed.Count).Where(i => ortMed[i].Op is "Gemm" or "FusedGemm" or "MatMul" or "FusedMatMul"));
        var ortPools = new Queue<int>(Enumerable.Range(0, ortMed.Count).Where(i => ortMed[i].Op.Contains("Pool", StringComparison.Ordinal)));
        var used = new HashSet<int>();
        double total = layers.Sum(l => l.Seconds), ortTotal = ortMed.Sum(n => n.Seconds);
        Console.WriteLine();
        Console.WriteLine($"profile, batch {batch}: median of {passes} passes per layer, ours synchronised per layer and ONNX Runtime's own " +
                          $"per-node profiler (a second session), alternating (load average {LoadAverage()}):");
        Console.WriteLine($"{"layer",-8} {"kernel",-16} {"output",-20} {"ours ms",8} {"%",5} {"GFLOP/s",8} {"ORT node",-32} {"ORT ms",8} {"ours/ORT",8}");
        foreach (var l in layers)
        {
            var q = l.Layer.StartsWith("conv", StringComparison.Ordinal) ? ortConvs : l.Layer.StartsWith("fc", StringComparison.Ordinal) ? ortGemms
                : l.Op.Contains("pool", StringComparison.OrdinalIgnoreCase) && l.Layer.StartsWith("pool", StringComparison.Ordinal) ? ortPools : null;
            string node = "", ortMs = "", ratio = "";
            if (q is { Count: > 0 })
            {
                int i = q.Dequeue();
                used.Add(i);
                node = ortMed[i].Node.Length > 32 ? ortMed[i].Node[^32..] : ortMed[i].Node;
                ortMs = (ortMed[i].Seconds * 1e3).ToString("F1", CultureInfo.InvariantCulture);
                ratio = ortMed[i].Seconds > 0 ? (l.Seconds / ortMed[i].Seconds).ToString("F2", CultureInfo.InvariantCulture) : "";
            }
            Console.WriteLine($"{l.Layer,-8} {l.Op,-16} {l.Shape,-20} {l.Seconds * 1e3,8:F1} {100 * l.Seconds / total,5:F1} " +
                              $"{(l.Flops > 0 ? (l.Flops / l.Seconds / 1e9).ToString("F1", CultureInfo.InvariantCulture) : ""),8} {node,-32} {ortMs,8} {ratio,8}");
        }
        for (int i = 0; i < ortMed.Count; i++)
            if (!used.Contains(i))
                Console.WriteLine($"{"",-8} {"",-16} {"",-20} {"",8} {"",5} {"",8} {(ortMed[i].Node.Length > 32 ? ortMed[i].Node[^32..] : ortMed[i].Node),-32} {ortMed[i].Seconds * 1e3,8:F1}   ({ortMed[i].Op})");
        Console.WriteLine($"{"total",-8} {"",-16} {"",-20} {total * 1e3,8:F1} {100.0,5:F1} {layers.Sum(l => l.Flops) / total / 1e9,8:F1} {"(sum of ORT's node kernel times)",-32} {ortTotal * 1e3,8:F1} {total / ortTotal,8:F2}");
    }

    // ------------------------------------------------------------------------------------------------ helpers

    static double FlopsPerImage()
    {
        var shapes = Vgg16Architecture.OutputShapes(Size, Size);
        var inputs = shapes.Prepend(new ActShape(3, Size, Size)).ToArray();
        return 2 * Vgg16Architecture.Layers.Sum(l => Vgg16Architecture.MultiplyAdds(l, inputs[l.Position], shapes[l.Position]));
    }

    /// <summary>(batch, 3, 224, 224) values uniform in [-2, 2], about the range of ImageNet-normalised pixels.</summary>
    static float[] SeededInput(int batch, int seed)
    {
        var rng = new Random(seed);
        var x = new float[batch * 3 * Size * Size];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
        return x;
    }

    static void WriteRawFloats(string path, float[] values)
        => File.WriteAllBytes(path, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    static float[] ReadRawFloats(string path, int count)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length != 4 * count) throw new InvalidDataException($"{path}: {bytes.Length} bytes, expected {4 * count} (float32 x {count})");
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();
    }

    static string DefaultWeights()
        => WeightsLocator.SearchFolders().Select(f => Path.Combine(f, WeightsLocator.RandomInit)).FirstOrDefault(File.Exists)
           ?? throw new FileNotFoundException($"no weights/{WeightsLocator.RandomInit}: make it with '/usr/bin/python3 tools/convert_weights.py --random-init --seed 0', or pass --weights");

    /// <summary>weights/vgg16.onnx for the default random-init weights; otherwise the weights' name with .onnx beside them,
    /// so that an ONNX file exported from other weights is never picked up by accident.</summary>
    static string DefaultOnnx(string root, string weights, bool defaultWeights)
        => defaultWeights ? Path.Combine(Path.GetDirectoryName(weights) ?? Path.Combine(root, "weights"), "vgg16.onnx") : Path.ChangeExtension(weights, ".onnx");

    internal static string RepositoryRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Tp7.Native.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("cannot find the repository root (Tp7.Native.sln) above the working directory or the program; run from the repository");
    }

    internal static string LoadAverage()
    {
        try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) + " (1, 5, 15 min)"; }
        catch (IOException) { return "unknown"; }
    }

    internal static int PositiveInt(string name, string value)
        => int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v > 0
            ? v : throw new ArgumentException($"{name} '{value}' is not a positive integer");
}
