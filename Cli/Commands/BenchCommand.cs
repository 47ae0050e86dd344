using System.CommandLine;
using System.Diagnostics;
using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;
using Tp7.Engine.Model;

namespace Tp7.Cli.Commands;

/// <summary>
/// `tp7 bench forward`: validates one batch against the host backend, warms up, then reports the median time per
/// batch, images/s and GFLOP/s for each batch size. Speed does not depend on weight values, so without a weights
/// file it draws random ones in memory.
/// </summary>
static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Benchmarks (validate, warm up, median)");
        var batches = new Option<string>("--batch") { Description = "Comma-separated batch sizes", DefaultValueFactory = _ => "1,8" }.PositiveIntegers();
        var reps = new Option<int>("--reps") { Description = "Timed repetitions per batch size (median reported)", DefaultValueFactory = _ => 5 }.AtLeast(1);
        var size = new Option<int?>("--size") { Description = "Input height and width (default: the model's, 224; VGG16 needs at least 32)" }.AtLeast(1);
        var profile = new Option<bool>("--profile") { Description = "Also print a per-layer kernel profile of one batch" };
        var forward = new Command("forward", "A model's forward pass to its output (VGG16: the logits)") { batches, reps, size, profile };
        var modelOptions = new ModelOptions(forward, ownSize: p => p.GetValue(size));
        var device = new DeviceOptions(forward);
        forward.SetHandler(parse =>
        {
            var sizes = OptionChecks.Integers(parse.GetValue(batches)!);
            int r = parse.GetValue(reps);
            modelOptions.Check(parse);
            device.Profiling = parse.GetValue(profile); // device events time the profiled pass's launches
            using var session = ModelSession.Open(parse, device, modelOptions);
            var model = session.Model;
            int s = session.Preprocessing.Size;
            string output = model.Graph.Output;
            var rng = new Random(0);
            double flopsPerImage = model.ForwardFlops(s);

            Validate(session, sizes.Min(), s, rng);
            Console.WriteLine($"{model.Name} forward, {session.Device.Precision.Name()}, {s}x{s}, {session.Device.Describe()}");
            Console.WriteLine($"{"batch",5} {"ms/batch",10} {"img/s",8} {"s/img",8} {"GFLOP/s",8}");
            foreach (var n in sizes)
            {
                var x = RandomInput(rng, n, s);
                model.Forward(x, n, s, s, [output]); // warm-up: kernel compilation, buffer planning
                var times = new double[r];
                for (int i = 0; i < r; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    model.Forward(x, n, s, s, [output]);
                    times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                }
                Array.Sort(times);
                double t = times[r / 2];
                Console.WriteLine($"{n,5} {t * 1e3,10:F1} {n / t,8:F2} {t / n,8:F3} {flopsPerImage * n / t / 1e9,8:F1}");
            }
            if (parse.GetValue(profile))
            {
                int n = sizes.Max();
                model.Profiler = new LayerProfiler();
                model.Forward(RandomInput(rng, n, s), n, s, s, [output]);
                ProfileTable.Print(model.Profiler, n);
                model.Profiler = null;
            }
            return 0;
        });
        bench.Subcommands.Add(forward);
        bench.Subcommands.Add(CreateTrain());
        bench.Subcommands.Add(BenchGemmCommand.Create());
        return bench;
    }

    /// <summary>
    /// `tp7 bench train`: one full training step of VGG16 with a new head (zero_grad, forward in train mode, cross-entropy,
    /// backward through every parameter, SGD with momentum), as ../shared/bench/torch_vgg16_anchor.py times PyTorch's.
    /// On a device other than the host it first checks one small step's loss and head gradient against the host backend.
    /// </summary>
    static Command CreateTrain()
    {
        var batch = new Option<int>("--batch") { Description = "Images per step", DefaultValueFactory = _ => 8 }.AtLeast(1);
        var reps = new Option<int>("--reps") { Description = "Timed steps (median reported)", DefaultValueFactory = _ => 3 }.AtLeast(1);
        var size = new Option<int>("--size") { Description = "Input height and width (at least 32)", DefaultValueFactory = _ => 224 }.Vgg16Size();
        var classes = new Option<int>("--classes") { Description = "Rows of the new head (the anchor uses 15, 15-Scene's)", DefaultValueFactory = _ => 15 }.AtLeast(2);
        var profile = new Option<bool>("--profile") { Description = "Also print a per-launch profile of one step (forward and backward)" };
        var weights = CliCommon.Weights();
        var train = new Command("train", "VGG16 training step: forward, backward, SGD with momentum") { batch, reps, size, classes, profile, weights };
        var device = new DeviceOptions(train);
        train.SetHandler(parse =>
        {
            int n = parse.GetValue(batch), s = parse.GetValue(size), r = parse.GetValue(reps), k = parse.GetValue(classes);
            var start = Tp7.Engine.Training.Finetune.StartingWeights(ModelSession.LoadVgg16(parse.GetValue(weights), "--weights").Weights, k, 0);
            using var dev = device.Open(parse);
            var rng = new Random(0);
            if (dev.Kind != DeviceKind.Host) ValidateTrain(dev, start, k, rng);
            using var model = new ImageModel(dev, start);
            start = null!;
            GC.Collect(2, GCCollectionMode.Aggressive, true, true);
            var names = model.Network.Parameters.Entries.Select(e => e.Name).ToList();
            using var trainer = new Tp7.Engine.Training.Trainer(model.Network, names,
                st => Tp7.Engine.Training.Optimizer.Create("sgd", st, 0.9, 0), seed: 0);
            var x = RandomInput(rng, n, s);
            var y = Enumerable.Range(0, n).Select(_ => rng.Next(k)).ToArray();
            var shape = new Tp7.Engine.Graph.Shape(n, 3, s, s);
            double first = trainer.Step(x, shape, y, 0, 1e-3); // warm-up: kernels, plans, arena
            Console.WriteLine($"VGG16 training step (forward + backward + SGD momentum 0.9), forward {dev.Precision.Name()} backward fp32, batch {n}, {s}x{s}, {k}-class head, {dev.Describe()}");
            Console.WriteLine($"warm-up loss {first:F4} (random labels: about ln {k} = {Math.Log(k):F2})");
            var times = new double[r];
            for (int i = 0; i < r; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                trainer.Step(x, shape, y, i + 1, 1e-3);
                dev.Synchronize();
                times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            Array.Sort(times);
            double t = times[r / 2];
            Console.WriteLine($"median {t:F3} s/step, {n / t:F2} img/s (steps: {string.Join(", ", times.Select(v => v.ToString("F3")))}); activations {model.Network.Executor.ArenaBytes >> 20} MiB, peak working set {Process.GetCurrentProcess().PeakWorkingSet64 >> 20} MiB");
            if (parse.GetValue(profile))
            {
                model.Profiler = new LayerProfiler();
                trainer.Step(x, shape, y, r + 1, 1e-3);
                ProfileTable.Print(model.Profiler, n);
                model.Profiler = null;
            }
            return 0;
        });
        return train;
    }

    /// <summary>One step at batch 2, 64x64 on the device and on the host: losses and the head's gradient must agree.</summary>
    static void ValidateTrain(ComputeDevice dev, Vgg16Weights start, int classes, Random rng)
    {
        var x = RandomInput(rng, 2, 64);
        var y = new[] { 0, classes - 1 };
        var shape = new Tp7.Engine.Graph.Shape(2, 3, 64, 64);
        (double Loss, float[] Grad) Run(ComputeDevice d)
        {
            using var m = new ImageModel(d, start);
            foreach (var node in m.Network.Graph.Nodes.Where(nd => nd.Op == "Dropout")) node.Attributes.Set("p", 0f);
            using var t = new Tp7.Engine.Training.Trainer(m.Network, m.Network.Parameters.Entries.Select(e => e.Name).ToList(), null);
            var r = t.ForwardBackward(x, shape, y, 0);
            return (r.Loss, m.Network.Parameters.Device.Download(m.Network.Parameters.Grad(Vgg16Architecture.HeadWeight)!.Data));
        }
        var got = Run(dev);
        using var host = new HostDevice();
        var want = Run(host);
        double maxRef = want.Grad.Max(v => Math.Abs(v)), maxErr = 0;
        for (int i = 0; i < want.Grad.Length; i++) maxErr = Math.Max(maxErr, Math.Abs(got.Grad[i] - want.Grad[i]));
        double rel = maxErr / Math.Max(maxRef, 1e-30);
        // fp32: 1e-4 of the loss, 1e-3 of the gradient's max; a reduced-precision forward: the limits of Validate.
        double limit = ValidationLimit(dev.Precision);
        bool ok = Math.Abs(got.Loss - want.Loss) <= (dev.Precision == Precision.Fp32 ? 1e-4 : limit) * Math.Abs(want.Loss) && rel <= limit;
        Console.WriteLine($"validation: loss {got.Loss:F6} vs host {want.Loss:F6}, head gradient max |diff| {rel:E2} of its max ({(ok ? "ok" : "MISMATCH")})");
        if (!ok) throw new InvalidOperationException($"{dev.Name}: a training step differs from the host backend (loss {got.Loss} vs {want.Loss}, head gradient {rel:E2})");
    }

    /// <summary>How far a device's outputs may be from the host's fp32, as a fraction of their max |value| (see <see cref="Validate"/>).</summary>
    static double ValidationLimit(Precision p) => p switch { Precision.Fp32 => 1e-3, Precision.Bf16 => 1e-1, _ => 2e-2 };

    static float[] RandomInput(Random rng, int n, int s)
    {
        var x = new float[3L * n * s * s];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
        return x;
    }

    /// <summary>
    /// The device's logits against the host backend's (fp32) on one batch (skipped when the device is the host), as a
    /// fraction of their max |value|: 1e-3 in fp32; with rounded inputs through 16 layers, 2e-2 for tf32 and fp16 (10
    /// mantissa bits) and 1e-1 for bf16 (7 bits).
    /// </summary>
    static void Validate(ModelSession session, int n, int s, Random rng)
    {
        if (session.Device.Kind == DeviceKind.Host)
        {
            Console.WriteLine("validation: the device is the host backend itself (checked against PyTorch by the tests)");
            return;
        }
        var x = RandomInput(rng, n, s);
        string output = session.Model.Graph.Output;
        var got = session.Model.Forward(x, n, s, s, [output])[output];
        using var host = new HostDevice();
        using var reference = session.OpenOn(host);
        var want = reference.Forward(x, n, s, s, [output])[output];
        double maxRef = want.Max(v => Math.Abs(v)), maxErr = 0;
        for (int i = 0; i < want.Length; i++) maxErr = Math.Max(maxErr, Math.Abs(got[i] - want[i]));
        double rel = maxErr / Math.Max(maxRef, 1e-30);
        double limit = ValidationLimit(session.Device.Precision);
        Console.WriteLine($"validation: outputs of {n} image(s) vs host backend (fp32): max |diff| {maxErr:E2}, {rel:E2} of max |value| (limit {limit:g1}: {(rel <= limit ? "ok" : "MISMATCH")})");
        if (rel > limit) throw new InvalidOperationException($"{session.Device.Name}: outputs differ from the host backend by {rel:E2} of their range");
    }
}
