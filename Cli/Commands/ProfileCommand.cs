using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Tp7.Engine.Data;
using Tp7.Engine.Model;
using Tp7.Engine.Profiling;

namespace Tp7.Cli.Commands;

/// <summary>
/// `tp7 profile`: a model's passes kernel by kernel (calls, total and mean time, GFLOP/s, GB/s, fraction of the
/// device's peak) per layer and per op kind, and a Chrome trace of host spans and device launches. The timing and
/// the sums are <see cref="ModelProfile"/>'s; this verb parses and prints.
/// </summary>
static class ProfileCommand
{
    public static Command Create()
    {
        var batch = new Option<int>("--batch") { Description = "Images per pass", DefaultValueFactory = _ => 8 }.AtLeast(1);
        var size = new Option<int?>("--size") { Description = "Input height and width (default: the model's, 224; VGG16 needs at least 32)" }.AtLeast(1);
        var reps = new Option<int>("--reps") { Description = "Profiled passes", DefaultValueFactory = _ => 3 }.AtLeast(1);
        var warmup = new Option<int>("--warmup") { Description = "Unprofiled passes first (kernel compilation, plans, memory; with 0, device events of the first launches include the compilation the device waited for)", DefaultValueFactory = _ => 1 }.AtLeast(0);
        var trace = new Option<string>("--trace") { Description = "Chrome trace JSON to write (opens in ui.perfetto.dev or chrome://tracing)", DefaultValueFactory = _ => Path.Combine("out", "profile", "trace.json") };
        var json = new Option<bool>("--json") { Description = "Print the profile as one JSON document" };
        var backward = new Option<bool>("--backward") { Description = "Profile training passes: forward in train mode, loss, backward through every parameter" };
        var data = new Option<string?>("--data") { Description = "Feed images from this folder (class folders, or train/ and test/) through the extraction pipeline, so decode and upload spans are real; default: a random input" };
        var top = new Option<int>("--top") { Description = "Kernels listed in the summary, most time first", DefaultValueFactory = _ => 5 }.AtLeast(1);
        var command = new Command("profile", "Per-kernel time, GFLOP/s, GB/s and fraction of peak of a model's passes, with a Chrome trace")
        {
            batch, size, reps, warmup, trace, json, backward, data, top,
        };
        var modelOptions = new ModelOptions(command, ownSize: p => p.GetValue(size));
        var device = new DeviceOptions(command) { Profiling = true };
        command.SetHandler(parse =>
        {
            modelOptions.Check(parse);
            IReadOnlyList<DatasetItem>? images = null;
            if (parse.GetValue(data) is { } dir)
            {
                if (parse.GetValue(backward)) throw new ArgumentException("--data feeds the extraction pipeline (forward only); it does not go with --backward");
                var set = DatasetLoader.Open(dir);
                images = [.. set.Train, .. set.Test];
                if (images.Count == 0) throw new ArgumentException($"--data {dir}: no images found");
            }
            using var session = ModelSession.Open(parse, device, modelOptions);
            var model = session.Model;
            var options = new ProfileOptions(parse.GetValue(batch), session.Preprocessing.Size, parse.GetValue(reps), parse.GetValue(warmup),
                parse.GetValue(backward), images, Precision: Tp7.Engine.Kernels.Precisions.Name(session.Device.Precision));
            using var profiler = new LayerProfiler();
            var result = ModelProfile.Run(model, profiler, options);
            string tracePath = parse.GetValue(trace)!;
            ChromeTrace.Write(tracePath, profiler, session.Device.Describe(), new Dictionary<string, object>
            {
                ["model"] = model.Name, ["batch"] = options.Batch, ["size"] = options.Size, ["reps"] = options.Reps,
                ["precision"] = options.Precision, ["input"] = result.InputSource,
            });
            if (parse.GetValue(json)) PrintJson(result, tracePath);
            else Print(result, tracePath, parse.GetValue(top), session.Device.Describe());
            return 0;
        });
        return command;
    }

    static string Pct(double? f) => f is { } v ? (100 * v).ToString("F1", CultureInfo.InvariantCulture) : "n/a";

    static void Print(ProfileResult r, string tracePath, int top, string device)
    {
        var o = r.Options;
        double? flopPeak = r.Peak?.Flops(o.Precision), bwPeak = r.Peak?.BytesPerSecond;
        string passes = o.Backward ? "training pass (forward + backward)" : "forward";
        Console.WriteLine($"{r.Model} {passes}, batch {o.Batch}, {o.Size}x{o.Size}, {o.Precision}, {o.Reps} profiled passes after {o.Warmup} warm-up; {device}");
        Console.WriteLine($"input: {r.InputSource}");
        Console.WriteLine($"kernel times: {r.Timing}");
        Console.WriteLine($"peak: {(r.Peak != null ? r.Peak.Describe(o.Precision) : "n/a (no peak is known for this device; ILGPU's CPU accelerator simulates GPU threads one by one)")}");

        var table = new Table().Title("per layer, in execution order")
            .AddColumn("layer").AddColumn("kernel").AddColumn("output").AddColumn(new TableColumn("calls").RightAligned())
            .AddColumn(new TableColumn("total ms").RightAligned()).AddColumn(new TableColumn("mean ms").RightAligned())
            .AddColumn(new TableColumn("GFLOP/s").RightAligned()).AddColumn(new TableColumn("GB/s").RightAligned())
            .AddColumn(new TableColumn("% FLOP peak").RightAligned()).AddColumn(new TableColumn("% BW peak").RightAligned());
        foreach (var k in r.Layers) table.AddRow(Row(k, flopPeak, bwPeak, withShape: true));
        table.AddRow(Row(r.Total, flopPeak, bwPeak, withShape: true));
        AnsiConsole.Console.Profile.Width = Math.Max(AnsiConsole.Console.Profile.Width, 140);
        AnsiConsole.Write(table);

        var kinds = new Table().Title("per op kind, most time first")
            .AddColumn("kernel").AddColumn(new TableColumn("calls").RightAligned()).AddColumn(new TableColumn("total ms").RightAligned())
            .AddColumn(new TableColumn("% of kernel time").RightAligned())
            .AddColumn(new TableColumn("GFLOP/s").RightAligned()).AddColumn(new TableColumn("GB/s").RightAligned())
            .AddColumn(new TableColumn("% FLOP peak").RightAligned()).AddColumn(new TableColumn("% BW peak").RightAligned());
        foreach (var k in r.Kinds)
            kinds.AddRow(Markup.Escape(k.Op), k.Calls.ToString(CultureInfo.InvariantCulture), Ms(k.Seconds), Pct(k.Seconds / r.Total.Seconds),
                Rate(k.GFlops), Rate(k.GBytes), Pct(k.FlopFraction(flopPeak)), Pct(k.BandwidthFraction(bwPeak)));
        AnsiConsole.Write(kinds);

        Console.WriteLine($"top {Math.Min(top, r.Layers.Count)} kernels by time:");
        foreach (var k in r.Layers.OrderByDescending(k => k.Seconds).Take(top))
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {k.Name,-12} {k.Op,-18} {Ms(k.Seconds),10} ms  {100 * k.Seconds / r.Total.Seconds,5:F1} %  {k.GFlops,9:F1} GFLOP/s  {Pct(k.FlopFraction(flopPeak)),5} % of FLOP peak"));
        foreach (var c in r.Copies)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"copies: {c.Name} on the {c.Op}: {c.Calls} x {c.Bytes / c.Calls / 1e6:F2} MB, {Ms(c.Seconds)} ms, {c.GBytes:F2} GB/s"));
        double perPass = r.Wall / o.Reps;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"total: {r.Total.Calls} launches ({r.ForwardNodes} per forward pass{(o.Backward ? $", {r.BackwardNodes} per backward pass" : "")}), " +
            $"{Ms(r.Total.Seconds)} ms of kernels, {r.Total.Flops / 1e9:F2} GFLOP, {r.Total.GFlops:F1} GFLOP/s = {Pct(r.Total.FlopFraction(flopPeak))} % of the {o.Precision} peak"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wall: {Ms(r.Wall)} ms for {o.Reps} passes ({Ms(perPass)} ms per pass, {o.Batch / perPass:F2} img/s); kernels busy {100 * r.Total.Seconds / r.Wall:F1} % of it"));
        if (r.Kinds.Any(k => k.Op.StartsWith("conv", StringComparison.Ordinal)) && r.Timing.StartsWith("host", StringComparison.Ordinal))
            Console.WriteLine("GFLOP/s counts a direct convolution's multiply-adds; the host's Winograd layers (3x3) do fewer multiplies, so theirs is an effective rate that can pass the FMA peak.");
        Console.WriteLine($"trace: {Path.GetFullPath(tracePath)} (open in https://ui.perfetto.dev or chrome://tracing)");
    }

    static string[] Row(KernelStats k, double? flopPeak, double? bwPeak, bool withShape)
        => [Markup.Escape(k.Name), Markup.Escape(k.Op), withShape ? Markup.Escape(k.Shape) : "", k.Calls.ToString(CultureInfo.InvariantCulture),
            Ms(k.Seconds), Ms(k.MeanSeconds), Rate(k.GFlops), Rate(k.GBytes), Pct(k.FlopFraction(flopPeak)), Pct(k.BandwidthFraction(bwPeak))];

    static string Ms(double seconds) => (seconds * 1e3).ToString(seconds < 0.01 ? "F3" : "F1", CultureInfo.InvariantCulture);
    static string Rate(double v) => v > 0 ? v.ToString("F1", CultureInfo.InvariantCulture) : "";

    static void PrintJson(ProfileResult r, string tracePath)
    {
        var o = r.Options;
        double? flopPeak = r.Peak?.Flops(o.Precision), bwPeak = r.Peak?.BytesPerSecond;
        object K(KernelStats k) => new
        {
            name = k.Name, op = k.Op, shape = k.Shape, calls = k.Calls, seconds = k.Seconds, mean_seconds = k.MeanSeconds,
            flops = k.Flops, bytes = k.Bytes, gflop_per_s = k.GFlops, gb_per_s = k.GBytes,
            flop_peak_fraction = k.FlopFraction(flopPeak), bandwidth_peak_fraction = k.BandwidthFraction(bwPeak),
        };
        var doc = new
        {
            model = r.Model, device = r.Device, batch = o.Batch, size = o.Size, reps = o.Reps, warmup = o.Warmup, backward = o.Backward,
            precision = o.Precision, input = r.InputSource, kernel_timing = r.Timing,
            peak = r.Peak == null ? null : new { name = r.Peak.Name, flops = flopPeak, bytes_per_second = bwPeak, source = r.Peak.Source },
            forward_launches_per_pass = r.ForwardNodes, backward_launches_per_pass = r.BackwardNodes,
            layers = r.Layers.Select(K), kinds = r.Kinds.Select(K), copies = r.Copies.Select(K), total = K(r.Total),
            wall_seconds = r.Wall, trace = Path.GetFullPath(tracePath),
        };
        Console.WriteLine(JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
    }
}
