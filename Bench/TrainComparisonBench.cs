using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using Tp7.Engine.Model;
using Tp7.Engine.Training;

namespace Tp7.Bench;

/// <summary>
/// One VGG16 training step on the CPU, our host backend against PyTorch 1.13 (tools/torch_train_bench.py in a child
/// process, all cores). A step on both sides: zero_grad, forward in train mode (dropout 0.5 after fc6 and fc7),
/// cross-entropy (mean), backward through every parameter, SGD(lr 0.01, momentum 0.9, weight decay 5e-4).
/// PyTorch runs first and to completion, so that it never shares the cores with ours and our process's peak working
/// set is our own step's (plus the .NET runtime). Both load the same weights file; the batches are seeded N(0, 1)
/// inputs and labels in [0, 1000) drawn by each engine's own generator, and the dropout masks differ, so the losses
/// agree only in size (≈ ln 1000 for random-init weights), not digit for digit.
/// Args: [--batch 8] [--size 224] [--reps 3] [--weights PATH] [--python PATH] [--seed 0] [--no-torch] [--profile]
/// (--profile: afterwards, one more step of ours synchronised per launch, printed as a per-layer table).
/// </summary>
public sealed class TrainComparisonBench : IBenchmark
{
    public string Name => "train-cpu";
    public string Description => "one VGG16 training step (SGD) on the CPU: host backend vs PyTorch (validated, peak memory)";

    const int Classes = 1000;
    const double Lr = 0.01, Momentum = 0.9, WeightDecay = 5e-4;
    const double Goal = 0.6; // our s/step ÷ PyTorch's, from the issue
    // A first loss of random-init weights must lie this close to ln(1000): their logits are ~0 (fc layers N(0, 0.01²)).
    const double RandomInitLossTolerance = 0.5;

    sealed record StepTimes(List<double> Wall, List<double> Cpu, List<double> Losses);

    public int Run(string[] args)
    {
        try { return RunChecked(args); }
        catch (Exception e) when (e is ArgumentException or IOException or InvalidOperationException or InvalidDataException
                                      or JsonException or UnauthorizedAccessException or ArithmeticException or KeyNotFoundException)
        {
            Console.Error.WriteLine($"train-cpu: {e.Message}");
            return 1;
        }
    }

    int RunChecked(string[] args)
    {
        int batch = 8, size = 224, reps = 3, seed = 0;
        bool profile = false, noTorch = false;
        string? weightsArg = null, python = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--batch": batch = ForwardComparisonBench.PositiveInt("--batch", Next()); break;
                case "--size": size = ForwardComparisonBench.PositiveInt("--size", Next()); break;
                case "--reps": reps = ForwardComparisonBench.PositiveInt("--reps", Next()); break;
                case "--seed": seed = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--weights": weightsArg = Next(); break;
                case "--python": python = Next(); break;
                case "--no-torch": noTorch = true; break;
                case "--profile": profile = true; break;
                default: Console.Error.WriteLine($"train-cpu: unknown argument '{args[i]}'"); return 2;
            }
        }
        if (size < 32) throw new ArgumentException($"--size {size}: VGG16 needs at least 32 (five 2x2 max-pools)");

        string root = ForwardComparisonBench.RepositoryRoot();
        python ??= File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        string tmp = Directory.CreateTempSubdirectory("tp7-train-cpu-").FullName;
        try
        {
            // Weights: --weights, else the default file, else (with PyTorch) a random-init file made by the converter so
            // that both engines start from identical weights; without PyTorch, our in-memory random init.
            string? weightsPath = weightsArg != null ? Path.GetFullPath(weightsArg) : WeightsLocator.FindDefault();
            if (weightsPath == null && !noTorch) weightsPath = MakeRandomInit(python, root, Path.Combine(tmp, WeightsLocator.RandomInit));
            if (weightsPath != null && !File.Exists(weightsPath)) throw new FileNotFoundException($"{weightsPath}: no such weights file; {WeightsLocator.HowToGet}");
            bool randomInit = weightsPath == null || WeightsLocator.IsRandomInit(weightsPath);

            using var host = new HostDevice();
            Console.WriteLine($"VGG16 training step (zero_grad, forward in train mode, cross-entropy, backward, SGD(lr {Lr}, momentum {Momentum}, " +
                              $"weight decay {WeightDecay})), fp32, batch {batch} of {size}x{size}, warm-up 1 + {reps} timed steps per engine");
            Console.WriteLine($"machine: {host.Name}, {Environment.ProcessorCount} cores ({host.Describe()})");
            Console.WriteLine($"weights: {weightsPath ?? "in-memory random init (Vgg16Weights.RandomInit(0)); no PyTorch run"}" +
                              $"{(randomInit ? " (random init)" : "")}");
            Console.WriteLine($"load average before: {ForwardComparisonBench.LoadAverage()}");

            // ---- PyTorch first, alone (its own validation: finite losses; ours below checks their size)
            JsonElement? torch = null;
            if (!noTorch)
            {
                torch = RunTorch(python, Path.Combine(root, "tools", "torch_train_bench.py"), weightsPath!, batch, size, reps, seed);
                var t = torch.Value;
                Console.WriteLine($"pytorch {t.GetProperty("torch_version").GetString()}: {t.GetProperty("threads").GetInt32()} threads, " +
                                  $"model loaded in {t.GetProperty("load_s").GetDouble():F1} s, warm-up step {t.GetProperty("warmup_s")[0].GetDouble():F2} s, " +
                                  $"losses {string.Join(", ", t.GetProperty("losses").EnumerateArray().Select(l => l.GetDouble().ToString("F4", CultureInfo.InvariantCulture)))}");
                Console.WriteLine($"load average after pytorch: {ForwardComparisonBench.LoadAverage()}");
            }

            // ---- ours: load, copy into the parameter block, drop the host copy before gradients and momentum exist
            long t0 = Stopwatch.GetTimestamp();
            using var model = LoadModel(host, weightsPath);
            GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            Console.WriteLine($"ours: {model.WeightsSource} loaded in {Stopwatch.GetElapsedTime(t0).TotalSeconds:F1} s; host copy released " +
                              $"(GC heap {Mib(GC.GetTotalMemory(false))}, working set {Mib(Environment.WorkingSet)})");

            var names = model.Network.Parameters.Entries.Select(e => e.Name).ToList();
            using var trainer = new Trainer(model.Network, names, store => Optimizer.Create("sgd", store, Momentum, WeightDecay), seed: (ulong)seed);
            var (x, labels) = SeededBatch(batch, size, seed);
            var shape = new Shape(batch, 3, size, size);
            long step = 0;
            (double Wall, double Cpu, double Loss) Step()
            {
                var proc = Process.GetCurrentProcess();
                var cpu0 = proc.TotalProcessorTime;
                long s0 = Stopwatch.GetTimestamp();
                double loss = trainer.Step(x, shape, labels, step++, Lr);
                host.Synchronize();
                double wall = Stopwatch.GetElapsedTime(s0).TotalSeconds;
                proc.Refresh();
                return (wall, (proc.TotalProcessorTime - cpu0).TotalSeconds, loss);
            }

            // ---- validate: the warm-up step's loss (Trainer.Step already throws on a non-finite one)
            var warm = Step();
            Console.WriteLine($"ours: warm-up step {warm.Wall:F2} s, loss {warm.Loss:F4}");
            bool ok = CheckLoss("ours", warm.Loss, randomInit);
            if (torch != null) ok &= CheckLoss("pytorch", torch.Value.GetProperty("losses")[0].GetDouble(), randomInit);
            if (!ok)
            {
                Console.Error.WriteLine($"train-cpu: a first loss is not the ≈ ln(1000) = {Math.Log(Classes):F3} of random-init weights; not timing");
                return 1;
            }

            // ---- time
            var ours = new StepTimes([], [], [warm.Loss]);
            for (int r = 0; r < reps; r++)
            {
                var s = Step();
                ours.Wall.Add(s.Wall);
                ours.Cpu.Add(s.Cpu);
                ours.Losses.Add(s.Loss);
            }
            long peak = Process.GetCurrentProcess().PeakWorkingSet64;
            Console.WriteLine($"ours: losses {string.Join(", ", ours.Losses.Select(l => l.ToString("F4", CultureInfo.InvariantCulture)))}");
            Console.WriteLine($"load average after:  {ForwardComparisonBench.LoadAverage()}");
            Report(ours, torch, batch, peak, model, trainer);

            if (profile)
            {
                // After the timed steps, so that per-launch synchronisation never touches the numbers above.
                model.Profiler = new LayerProfiler();
                var s = Step();
                PrintProfile(model.Profiler, batch, s.Wall);
                model.Profiler = null;
            }
            return 0;
        }
        finally
        {
            try { Directory.Delete(tmp, recursive: true); } catch (IOException) { }
        }
    }

    // ------------------------------------------------------------------------------------------------ engines

    /// <summary>The model with its weights in the parameter block. The host copy (another 528 MiB) lives only in this
    /// frame: a local of the caller, even one set to null, can stay a GC root for the caller's whole run in unoptimised
    /// (tier-0) code, and the bench's main method runs only once.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    static ImageModel LoadModel(HostDevice host, string? weightsPath)
        => new(host, weightsPath != null ? WeightsLocator.Load(weightsPath) : Vgg16Weights.RandomInit(0));

    static string MakeRandomInit(string python, string root, string path)
    {
        string script = Path.Combine(root, "tools", "convert_weights.py");
        Console.WriteLine($"weights: none in weights/; making torchvision's random init for both engines: {python} {script} --random-init --seed 0 --out {path}");
        RunChild(python, [script, "--random-init", "--seed", "0", "--out", path], captureStdout: false);
        if (!File.Exists(path)) throw new InvalidOperationException($"{script}: {path} not written (see its error above)");
        return path;
    }

    /// <summary>tools/torch_train_bench.py to completion; its last stdout line is the JSON summary.</summary>
    static JsonElement RunTorch(string python, string script, string weights, int batch, int size, int reps, int seed)
    {
        if (!File.Exists(script)) throw new FileNotFoundException($"{script}: the PyTorch side of the benchmark is missing");
        string I(int v) => v.ToString(CultureInfo.InvariantCulture);
        Console.WriteLine($"pytorch: {python} {script} --weights {weights} --batch {batch} --size {size} --reps {reps} --warmup 1 --seed {seed}");
        string stdout = RunChild(python, [script, "--weights", weights, "--batch", I(batch), "--size", I(size), "--reps", I(reps), "--warmup", "1", "--seed", I(seed)],
                                 captureStdout: true);
        string last = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault()
                      ?? throw new InvalidOperationException($"{Path.GetFileName(script)}: printed nothing");
        return JsonDocument.Parse(last).RootElement.Clone();
    }

    static string RunChild(string exe, string[] arguments, bool captureStdout)
    {
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false, RedirectStandardOutput = captureStdout };
        foreach (var a in arguments) psi.ArgumentList.Add(a);
        string what = $"{exe} {Path.GetFileName(arguments[0])}";
        Process p;
        try { p = Process.Start(psi) ?? throw new InvalidOperationException($"{what}: could not start"); }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"{exe}: cannot run ({e.Message}); PyTorch 1.13 is needed (apt-get install python3-torch python3-torchvision), or pass --python, or --no-torch");
        }
        using (p)
        {
            string stdout = captureStdout ? p.StandardOutput.ReadToEnd() : "";
            p.WaitForExit();
            if (p.ExitCode != 0) throw new InvalidOperationException($"{what}: exited with code {p.ExitCode} (its error is printed above)");
            return stdout;
        }
    }

    // ------------------------------------------------------------------------------------------------ report

    static bool CheckLoss(string who, double loss, bool randomInit)
    {
        double lnC = Math.Log(Classes);
        bool ok = double.IsFinite(loss) && (!randomInit || Math.Abs(loss - lnC) <= RandomInitLossTolerance);
        Console.WriteLine($"validate {who,-8} first loss {loss:F4}: finite{(randomInit ? $", |loss - ln {Classes}| = {Math.Abs(loss - lnC):F3} ≤ {RandomInitLossTolerance}" : " (trained weights: size not checked)")} " +
                          $"{(ok ? "ok" : "MISMATCH")}");
        return ok;
    }

    static double Median(IReadOnlyList<double> v)
    {
        var s = v.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    static string Mib(long bytes) => $"{bytes / (double)(1 << 20):F0} MiB";

    static void Report(StepTimes ours, JsonElement? torch, int batch, long oursPeak, ImageModel model, Trainer trainer)
    {
        double oursMed = Median(ours.Wall);
        double? torchMed = torch?.GetProperty("median_s").GetDouble();
        long? torchPeak = torch?.GetProperty("peak_rss_bytes").GetInt64();

        Console.WriteLine();
        Console.WriteLine($"{"engine",-20} {"median s/step",13} {"min s/step",10} {"img/s",6} {"CPU s/step",10} {"peak RSS",10} {"÷ PyTorch",9}");
        Console.WriteLine($"{"ours (host backend)",-20} {oursMed,13:F3} {ours.Wall.Min(),10:F3} {batch / oursMed,6:F2} {Median(ours.Cpu),10:F2} " +
                          $"{Mib(oursPeak),10} {(torchMed is double tm ? (oursMed / tm).ToString("F2", CultureInfo.InvariantCulture) : "-"),9}");
        if (torch is JsonElement t)
            Console.WriteLine($"{"pytorch",-20} {torchMed,13:F3} {t.GetProperty("min_s").GetDouble(),10:F3} {batch / torchMed,6:F2} " +
                              $"{t.GetProperty("cpu_s_median").GetDouble(),10:F2} {Mib(torchPeak!.Value),10} {1.0,9:F2}");
        Console.WriteLine();
        if (torchMed is double med)
        {
            Console.WriteLine($"ours / PyTorch: {oursMed / med:F2} s/step; goal ≤ {Goal:F1}: {(oursMed / med <= Goal ? "met" : "NOT met")}");
            Console.WriteLine($"peak RSS ours / PyTorch: {oursPeak / (double)torchPeak!.Value:F2} ({Mib(oursPeak)} vs {Mib(torchPeak.Value)}); " +
                              $"goal ≤ 1: {(oursPeak <= torchPeak ? "met" : "NOT met")}");
        }
        // Where our memory is: the parameter block, its gradient mirror and SGD's momentum buffer are each the size of
        // the weights; the arena holds activations and their gradients; the rest is the runtime and the GC's slack.
        var store = model.Network.Parameters;
        long paramBytes = 4 * store.Count, gradBytes = 4 * store.TrainableCount, stateBytes = trainer.Optimizer!.State.Sum(s => 4 * s.Data.Length);
        long arena = model.Network.Executor.ArenaBytes;
        var gc = GC.GetGCMemoryInfo();
        Console.WriteLine($"ours, memory: parameters {Mib(paramBytes)} + gradients {Mib(gradBytes)} + momentum {Mib(stateBytes)} + activation arena {Mib(arena)} " +
                          $"= {Mib(paramBytes + gradBytes + stateBytes + arena)}; GC heap {Mib(GC.GetTotalMemory(false))} " +
                          $"(committed {Mib(gc.TotalCommittedBytes)}), working set now {Mib(Environment.WorkingSet)}, peak {Mib(oursPeak)} (includes the .NET runtime)");
        Console.WriteLine("Losses differ between the engines: each draws its own seeded batch and dropout masks. Ours ran after PyTorch had exited, " +
                          "so the two never shared the cores; on a busy machine wall time is inflated and only ratios measured close together compare.");
    }

    static void PrintProfile(LayerProfiler profiler, int batch, double stepSeconds)
    {
        var rows = profiler.Summary();
        double total = rows.Sum(r => r.Seconds);
        double forward = rows.Where(r => !r.Op.EndsWith(" backward", StringComparison.Ordinal)).Sum(r => r.Seconds);
        Console.WriteLine();
        Console.WriteLine($"profile of ours, one training step of batch {batch}, synchronised per launch (load average {ForwardComparisonBench.LoadAverage()}):");
        Console.WriteLine($"{"layer",-10} {"kernel",-24} {"output",-20} {"ms",9} {"%",6} {"GFLOP/s",8} {"GB/s",7}");
        foreach (var r in rows)
            Console.WriteLine($"{r.Layer,-10} {r.Op,-24} {r.Shape,-20} {r.Seconds * 1e3,9:F1} {100 * r.Seconds / stepSeconds,6:F1} " +
                              $"{(r.GFlops > 0 ? r.GFlops.ToString("F1", CultureInfo.InvariantCulture) : ""),8} {r.GBytes,7:F1}");
        double other = stepSeconds - total;
        Console.WriteLine($"{"forward",-10} {"",-24} {"",-20} {forward * 1e3,9:F1} {100 * forward / stepSeconds,6:F1}");
        Console.WriteLine($"{"backward",-10} {"",-24} {"",-20} {(total - forward) * 1e3,9:F1} {100 * (total - forward) / stepSeconds,6:F1}");
        Console.WriteLine($"{"other",-10} {"zero_grad, loss, SGD",-24} {"",-20} {other * 1e3,9:F1} {100 * other / stepSeconds,6:F1}");
        Console.WriteLine($"{"step",-10} {"",-24} {"",-20} {stepSeconds * 1e3,9:F1} {100.0,6:F1} {profiler.Entries.Sum(e => e.Flops) / total / 1e9,8:F1}");
    }

    // ------------------------------------------------------------------------------------------------ helpers

    /// <summary>(batch, 3, size, size) N(0, 1) values (Box-Muller on Random(seed)) and labels in [0, 1000), as the
    /// PyTorch side draws them (torch.randn, torch.randint) from its own generator.</summary>
    static (float[] X, int[] Labels) SeededBatch(int batch, int size, int seed)
    {
        var rng = new Random(seed);
        var x = new float[(long)batch * 3 * size * size];
        for (int i = 0; i < x.Length; i += 2)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble(), r = Math.Sqrt(-2.0 * Math.Log(u1));
            x[i] = (float)(r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < x.Length) x[i + 1] = (float)(r * Math.Sin(2 * Math.PI * u2));
        }
        var labels = new int[batch];
        for (int i = 0; i < batch; i++) labels[i] = rng.Next(Classes);
        return (x, labels);
    }
}
