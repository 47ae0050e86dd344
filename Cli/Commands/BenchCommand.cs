using System.CommandLine;
using System.Diagnostics;
using Tp7.Engine.Devices;
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
        var batches = new Option<string>("--batch") { Description = "Comma-separated batch sizes", DefaultValueFactory = _ => "1,8" };
        var reps = new Option<int>("--reps") { Description = "Timed repetitions per batch size (median reported)", DefaultValueFactory = _ => 5 };
        var size = new Option<int>("--size") { Description = "Input height and width", DefaultValueFactory = _ => 224 };
        var profile = new Option<bool>("--profile") { Description = "Also print a per-layer kernel profile of one batch" };
        var weights = CliCommon.Weights("Weights to load (default: the default file if present, else random in memory)");
        var forward = new Command("forward", "VGG16 forward pass to the logits") { batches, reps, size, profile, weights };
        var device = new DeviceOptions(forward);
        forward.SetHandler(parse =>
        {
            var sizes = parse.GetValue(batches)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => int.TryParse(s, out var v) && v > 0 ? v : throw new ArgumentException($"--batch: '{s}' is not a positive integer"))
                .ToArray();
            int s = parse.GetValue(size), r = Math.Max(1, parse.GetValue(reps));
            using var session = ModelSession.Open(parse, device, weights, allowInMemoryRandom: true);
            var model = session.Model;
            var rng = new Random(0);
            var shapes = Vgg16Architecture.OutputShapes(s, s);
            var inputs = shapes.Prepend(new ActShape(3, s, s)).ToArray();
            double flopsPerImage = 2 * Vgg16Architecture.Layers.Sum(l => Vgg16Architecture.MultiplyAdds(l, inputs[l.Position], shapes[l.Position]));

            Validate(session, sizes.Min(), s, rng);
            Console.WriteLine($"VGG16 forward, fp32, {s}x{s}, {session.Device.Describe()}");
            Console.WriteLine($"{"batch",5} {"ms/batch",10} {"img/s",8} {"s/img",8} {"GFLOP/s",8}");
            foreach (var n in sizes)
            {
                var x = RandomInput(rng, n, s);
                model.Forward(x, n, s, s, ["fc8"]); // warm-up: kernel compilation, buffer planning
                var times = new double[r];
                for (int i = 0; i < r; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    model.Forward(x, n, s, s, ["fc8"]);
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
                model.Forward(RandomInput(rng, n, s), n, s, s, ["fc8"]);
                ProfileTable.Print(model.Profiler, n);
                model.Profiler = null;
            }
            return 0;
        });
        bench.Subcommands.Add(forward);
        return bench;
    }

    static float[] RandomInput(Random rng, int n, int s)
    {
        var x = new float[3L * n * s * s];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
        return x;
    }

    /// <summary>The device's logits against the host backend's on one batch (skipped when the device is the host).</summary>
    static void Validate(ModelSession session, int n, int s, Random rng)
    {
        if (session.Device.Kind == DeviceKind.Host)
        {
            Console.WriteLine("validation: the device is the host backend itself (checked against PyTorch by the tests)");
            return;
        }
        var x = RandomInput(rng, n, s);
        var got = session.Model.Forward(x, n, s, s, ["fc8"])["fc8"];
        using var host = new HostDevice();
        using var reference = new Vgg16(host, session.Weights);
        var want = reference.Forward(x, n, s, s, ["fc8"])["fc8"];
        double maxRef = want.Max(v => Math.Abs(v)), maxErr = 0;
        for (int i = 0; i < want.Length; i++) maxErr = Math.Max(maxErr, Math.Abs(got[i] - want[i]));
        double rel = maxErr / Math.Max(maxRef, 1e-30);
        Console.WriteLine($"validation: logits of {n} image(s) vs host backend: max |diff| {maxErr:E2}, {rel:E2} of max |logit| ({(rel <= 1e-3 ? "ok" : "MISMATCH")})");
        if (rel > 1e-3) throw new InvalidOperationException($"{session.Device.Name}: logits differ from the host backend by {rel:E2} of their range");
    }
}
