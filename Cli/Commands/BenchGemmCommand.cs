using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Tp7.Engine.Analysis;
using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Cli.Commands;

/// <summary>
/// `tp7 bench gemm`: square fp32 GEMMs (C = A·B, size³) per kernel version, each validated against the host before it
/// is timed (see <see cref="GemmBenchmark"/>), in one table: median ms, TFLOP/s and the fraction of the device's peak.
/// On the host backend it times the host GEMM.
/// </summary>
static class BenchGemmCommand
{
    public static Command Create()
    {
        var size = new Option<int>("--size") { Description = "M = N = K", DefaultValueFactory = _ => 4096 }.AtLeast(1);
        var reps = new Option<int>("--reps") { Description = "Timed launches per version (median reported)", DefaultValueFactory = _ => 10 }.AtLeast(1);
        var versions = new Option<string?>("--versions")
        {
            Description = "Comma-separated GEMM versions: an enum name (V2Tiled, V4MmaTf32), its number (v2) or its name after the " +
                          "number (tiled, mma-tf32). Default: every fp32 version but V1Naive, or with --precision the tensor-core " +
                          "version of that precision",
        };
        var command = new Command("gemm", "Square GEMM per kernel version: validate, time, TFLOP/s and fraction of peak") { size, reps, versions };
        var device = new DeviceOptions(command);
        versions.Validators.Add(r =>
        {
            foreach (var name in (r.GetValueOrDefault<string?>() ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                if (GemmBenchmark.ParseVersion(name, out var why) == null)
                {
                    r.AddError($"--versions: {why}");
                    return;
                }
        });
        command.SetHandler(parse =>
        {
            int n = parse.GetValue(size), r = parse.GetValue(reps);
            var precision = device.PrecisionOf(parse);
            var named = (parse.GetValue(versions) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(v => GemmBenchmark.ParseVersion(v, out _)!.Value).Distinct().ToList();
            string choice = parse.GetValue(device.Device)!;
            if (choice == "cpu" && named.Count > 0)
                throw new ArgumentException("--versions names GPU kernel versions; --device cpu times the host GEMM (V2Blocked)");
            using var dev = device.Open(parse);
            List<GemmBenchRow> rows;
            if (dev is IlgpuDevice gpu)
            {
                if (named.Count == 0)
                    named = precision == Precision.Fp32
                        ? Enum.GetValues<GemmVersion>().Where(v => v != GemmVersion.V1Naive && Precisions.Of(v) == Precision.Fp32).ToList()
                        : [precision.MmaGemmVersion()!.Value];
                rows = GemmBenchmark.RunGpu(gpu, named, n, r, line => Console.Error.WriteLine(line));
            }
            else
            {
                if (named.Count > 0) throw new ArgumentException($"--versions names GPU kernel versions; {dev.Name} is the host backend, which times the host GEMM");
                rows = [GemmBenchmark.RunHost((HostDevice)dev, n, r)];
            }
            Print(rows, n, r, dev);
            return rows.All(row => row.Valid) ? 0 : 1;
        });
        return command;
    }

    static void Print(List<GemmBenchRow> rows, int n, int reps, ComputeDevice dev)
    {
        Console.WriteLine($"gemm C = A·B, {n}x{n}x{n}, fp32 in memory, {dev.Describe()}, median of {reps} launches, each synchronised " +
                          $"({DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC)");
        var table = new Table().AddColumn("version").AddColumn("inputs")
            .AddColumn(new TableColumn("median ms").RightAligned()).AddColumn(new TableColumn("TFLOP/s").RightAligned())
            .AddColumn(new TableColumn("peak TFLOP/s").RightAligned()).AddColumn(new TableColumn("% of peak").RightAligned()).AddColumn("check");
        string F(double v, string fmt) => double.IsNaN(v) ? "-" : v.ToString(fmt, CultureInfo.InvariantCulture);
        foreach (var row in rows)
            table.AddRow(Markup.Escape(row.Version), row.Precision.Name(), F(row.MedianMs, "F3"), F(row.Tflops, "F3"),
                row.PeakTflops is { } p ? p.ToString(p >= 10 ? "F1" : "G3", CultureInfo.InvariantCulture) : "?",
                row.FractionOfPeak is { } f ? (100 * f).ToString("F1", CultureInfo.InvariantCulture) : "-", Markup.Escape(row.Check));
        AnsiConsole.Console.Profile.Width = Math.Max(AnsiConsole.Console.Profile.Width, 160);
        AnsiConsole.Write(table);
        string peak = Tp7.Engine.Profiling.DevicePeaks.For(dev) is { } pk ? pk.Describe("fp32") : "device not in the peak table (?)";
        Console.WriteLine($"peak: {peak}; tensor-core rows use the dense tf32 / fp16 figure of the same table (docs/profile.md)");
    }
}
