using System.CommandLine;
using Spectre.Console;
using Tp7.Engine.Devices;
using Tp7.Engine.Model;

namespace Tp7.Cli;

/// <summary>Opens the device, finds and loads the weights, builds VGG16 on the device; says what it chose on stderr.</summary>
sealed class ModelSession : IDisposable
{
    public ComputeDevice Device { get; }
    public Vgg16 Model { get; }
    public string WeightsDescription { get; }
    public bool RandomWeights { get; }
    /// <summary>The host copy of the weights (e.g. to build a reference model on another device).</summary>
    public Vgg16Weights Weights { get; }
    /// <summary>SHA-256 of the weights file (keys the feature cache); in-memory random weights get a fixed name.</summary>
    public string WeightsSha256 => sha ??= File.Exists(Weights.Source)
        ? Tp7.Engine.Features.FeatureCache.HashFile(Weights.Source)
        : "in-memory-random-init-seed0";
    string? sha;

    ModelSession(ComputeDevice device, Vgg16 model, Vgg16Weights weights, bool random)
    {
        Device = device; Model = model; Weights = weights; WeightsDescription = weights.Source; RandomWeights = random;
    }

    /// <param name="allowInMemoryRandom">When no weights file exists, draw torchvision-distributed weights in memory.</param>
    public static ModelSession Open(ParseResult parse, DeviceOptions deviceOptions, Option<string?> weightsOption, bool allowInMemoryRandom = false)
    {
        string? path = parse.GetValue(weightsOption) ?? WeightsLocator.FindDefault();
        Vgg16Weights weights;
        bool random;
        if (path == null)
        {
            if (!allowInMemoryRandom) WeightsLocator.Resolve(null); // throws with how to get weights
            weights = Vgg16Weights.RandomInit(0);
            random = true;
        }
        else
        {
            weights = WeightsLocator.Load(path);
            random = WeightsLocator.IsRandomInit(path);
        }
        if (random)
            Console.Error.WriteLine($"warning: {weights.Source} holds RANDOM weights, not ImageNet-trained ones: predictions and accuracies mean little. {WeightsLocator.HowToGet}");
        var device = deviceOptions.Open(parse);
        try
        {
            var model = new Vgg16(device, weights) { Log = line => Console.Error.WriteLine(line) };
            return new ModelSession(device, model, weights, random);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Model.Dispose();
        Device.Dispose();
    }
}

static class ProfileTable
{
    public static void Print(LayerProfiler profiler, int images)
    {
        var rows = profiler.Summary();
        double total = rows.Sum(r => r.Seconds);
        var table = new Table().Title($"kernel profile ({images} images, synchronised per layer)")
            .AddColumn("layer").AddColumn("kernel").AddColumn("output").AddColumn(new TableColumn("calls").RightAligned())
            .AddColumn(new TableColumn("ms").RightAligned()).AddColumn(new TableColumn("%").RightAligned())
            .AddColumn(new TableColumn("GFLOP/s").RightAligned()).AddColumn(new TableColumn("GB/s").RightAligned());
        foreach (var r in rows)
            table.AddRow(Markup.Escape(r.Layer), Markup.Escape(r.Op), Markup.Escape(r.Shape), r.Calls.ToString(), $"{r.Seconds * 1e3:F2}", $"{100 * r.Seconds / total:F1}",
                r.GFlops > 0 ? $"{r.GFlops:F1}" : "", $"{r.GBytes:F1}");
        table.AddRow("total", "", "", "", $"{total * 1e3:F2}", "100", $"{profiler.Entries.Sum(e => e.Flops) / total / 1e9:F1}", "");
        AnsiConsole.Console.Profile.Width = Math.Max(AnsiConsole.Console.Profile.Width, 110);
        AnsiConsole.Write(table);
        Console.WriteLine("GFLOP/s counts a direct convolution's multiply-adds; Winograd layers (host, 3x3) do 2.25x fewer multiplies, so theirs is an effective rate.");
    }
}
