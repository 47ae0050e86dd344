using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Tp7.Engine.Devices;
using Tp7.Engine.Imaging;
using Tp7.Engine.Model;
using Tp7.Engine.Onnx;

namespace Tp7.Cli;

/// <summary>
/// --model (vgg16, resnet18 or an .onnx file), --weights (VGG16's), and the preprocessing overrides an ONNX model may
/// need (--size, --mean, --std, --range): a model file says nothing about its preprocessing.
/// </summary>
sealed class ModelOptions
{
    public readonly Option<string?> Model;
    public readonly Option<string?> Weights = CliCommon.Weights();
    public readonly Option<int?>? Size;
    public readonly Option<string?> Mean = new("--mean") { Description = "Per-channel mean R,G,B subtracted after scaling to the range (default ImageNet's 0.485,0.456,0.406; resnet18: its own graph)" };
    public readonly Option<string?> Std = new("--std") { Description = "Per-channel std R,G,B (default ImageNet's 0.229,0.224,0.225)" };
    public readonly Option<int?> Range = new("--range") { Description = "1 (pixels in [0, 1], torchvision) or 255 (pixels in [0, 255])" };
    readonly string defaultModel;

    /// <param name="defaultModel">vgg16, or auto: VGG16 when ImageNet weights are present (or --weights given), else ResNet18.</param>
    /// <param name="ownSize">The verb has its own --size option (bench, finetune, info).</param>
    public ModelOptions(Command command, string defaultModel = "vgg16", Func<ParseResult, int?>? ownSize = null)
    {
        this.defaultModel = defaultModel;
        Model = new Option<string?>("--model")
        {
            Description = defaultModel == "auto"
                ? "vgg16, resnet18 (ImageNet-trained, offline) or PATH.onnx; default: vgg16 when ImageNet VGG16 weights are found (see --weights), else resnet18"
                : "vgg16, resnet18 (ImageNet-trained, offline) or PATH.onnx",
        };
        command.Options.Add(Model);
        command.Options.Add(Weights);
        if (ownSize == null)
        {
            Size = new Option<int?>("--size") { Description = "Input height and width (default: the model's, 224; VGG16 needs at least 32)" }.AtLeast(1);
            command.Options.Add(Size);
        }
        this.ownSize = ownSize;
        command.Options.Add(Mean);
        command.Options.Add(Std);
        command.Options.Add(Range);
    }

    readonly Func<ParseResult, int?>? ownSize;
    ImportedModel? imported;
    string? importedChoice;

    /// <summary>
    /// Every check of these options, run before a verb lists its data: --model and --weights (the weights lookup
    /// included: a --weights or TP7_WEIGHTS that names nothing fails here), the preprocessing, and --size against the
    /// model (VGG16's minimum; an ONNX model's own shape inference, which names the node that cannot take it).
    /// </summary>
    /// <param name="check">The verb's own checks against the model's graph and preprocessing (e.g. its --layer).</param>
    public void Check(ParseResult parse, Action<Tp7.Engine.Graph.Graph, Preprocessing>? check = null)
    {
        string choice = Decide(parse);
        if (choice == "vgg16")
        {
            var vggPre = Preprocessing(parse, Tp7.Engine.Imaging.Preprocessing.ImageNet);
            if (vggPre.Size < Vgg16Architecture.MinInputSize) throw new ArgumentException(Vgg16Architecture.SizeTooSmall(vggPre.Size));
            WeightsLocator.Locate(parse.GetValue(Weights));
            check?.Invoke(Vgg16Graph.Build(), vggPre);
            return;
        }
        var model = Import(choice);
        var pre = Preprocessing(parse, ModelCatalog.DefaultPreprocessing(choice, model));
        try { ImageModel.Layers(model.Graph, pre.Size); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or InvalidDataException)
        {
            throw new ArgumentException($"--size {pre.Size}: {ModelCatalog.NameOf(choice)} cannot take a {pre.Size}x{pre.Size} input: {e.Message}");
        }
        check?.Invoke(model.Graph, pre);
    }

    /// <summary>The ONNX model <paramref name="choice"/> names, imported once for the check and the session; the session
    /// takes it (<paramref name="keep"/> false) so its host weights are not held twice once they are on a device.</summary>
    internal ImportedModel Import(string choice, bool keep = true)
    {
        var model = importedChoice == choice ? imported! : ModelCatalog.Import(choice);
        (imported, importedChoice) = keep ? (model, choice) : (null, null);
        return model;
    }

    /// <summary>The model to open: the option's value checked, or the default resolved (auto says why on stderr).</summary>
    public string Choose(ParseResult parse)
    {
        string choice = Decide(parse);
        if (choice == "resnet18" && parse.GetValue(Model) == null)
            Console.Error.WriteLine("model: resnet18 (no ImageNet VGG16 weights found, so the ImageNet-trained ResNet18 of the NuGet package " +
                                    "Microsoft.ML.DnnImageFeaturizer.ResNet18 is used; --model vgg16 for the lab's network)");
        return choice;
    }

    /// <summary>--model checked, or the default: auto takes VGG16 when the weights lookup finds ImageNet weights.</summary>
    string Decide(ParseResult parse)
    {
        if (parse.GetValue(Model) is { } m)
        {
            ModelCatalog.Check(m);
            if (parse.GetValue(Weights) != null && m != "vgg16") throw new ArgumentException($"--weights holds VGG16 weights; it does not go with --model {m}");
            return m;
        }
        if (defaultModel != "auto" || parse.GetValue(Weights) != null) return "vgg16";
        var found = WeightsLocator.Locate(null);
        if (found != null && !WeightsLocator.IsRandomInit(found.Path)) return "vgg16";
        return ModelCatalog.ResNet18Available() ? "resnet18" : "vgg16";
    }

    /// <summary>The preprocessing for a model: its default with every override given on the command line, checked.</summary>
    public Preprocessing Preprocessing(ParseResult parse, Preprocessing basis)
    {
        var p = basis;
        int? size = Size != null ? parse.GetValue(Size) : ownSize?.Invoke(parse);
        if (size is { } s)
        {
            if (s < 1) throw new ArgumentException($"--size must be positive, got {s}");
            p = p with { Size = s };
        }
        if (parse.GetValue(Mean) is { } mean) p = p with { Mean = Triple(mean, "--mean") };
        if (parse.GetValue(Std) is { } std) p = p with { Std = Triple(std, "--std") };
        if (parse.GetValue(Range) is { } range) p = p with { Range = range };
        try { p.Validate(); }
        catch (ArgumentException e) { throw new ArgumentException(e.Message.Replace("preprocessing: Std", "--std").Replace("preprocessing: Mean", "--mean")); }
        return p;
    }

    public bool PreprocessingOverridden(ParseResult parse)
        => parse.GetValue(Mean) != null || parse.GetValue(Std) != null || parse.GetValue(Range) != null || (Size != null ? parse.GetValue(Size) : ownSize?.Invoke(parse)) != null;

    static float[] Triple(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var v = new float[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!float.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out v[i]) || !float.IsFinite(v[i]))
                throw new ArgumentException($"{option}: '{parts[i]}' is not a number (expected R,G,B, e.g. 0.485,0.456,0.406)");
        if (v.Length == 1) v = [v[0], v[0], v[0]];
        if (v.Length != 3) throw new ArgumentException($"{option}: {v.Length} values, expected 3 (R,G,B) or 1");
        return v;
    }
}

/// <summary>Opens the device and the model --model names (VGG16: finds and loads the weights); says what it chose on stderr.</summary>
sealed class ModelSession : IDisposable
{
    public ComputeDevice Device { get; }
    public ImageModel Model { get; }
    public string WeightsDescription { get; }
    public bool RandomWeights { get; }
    /// <summary>VGG16's host weights (e.g. to build a reference model on another device); null for ONNX models.</summary>
    public Vgg16Weights? Weights { get; }
    public Preprocessing Preprocessing => Model.Preprocessing;
    /// <summary>What keys the feature cache: SHA-256 of the weights or model files, with the preprocessing when it is not the default.</summary>
    public string WeightsSha256 => sha ??= ComputeIdentity();
    string? sha;
    readonly string[] files;
    readonly bool customPreprocessing;

    ModelSession(ComputeDevice device, ImageModel model, Vgg16Weights? weights, bool random, string description, string[] files, bool customPreprocessing)
    {
        Device = device; Model = model; Weights = weights; WeightsDescription = description; RandomWeights = random;
        this.files = files; this.customPreprocessing = customPreprocessing;
    }

    string ComputeIdentity()
        => WithPrecision(files.Length == 0 ? "in-memory-random-init-seed0" : ModelCatalog.Identity(files, Model.Preprocessing, customPreprocessing), Device.Precision);

    /// <summary>Features computed with rounded inputs are not fp32 features: a precision other than fp32 is part of the
    /// identity that keys the feature cache and that svm predict compares.</summary>
    public static string WithPrecision(string identity, Tp7.Engine.Kernels.Precision p)
        => p == Tp7.Engine.Kernels.Precision.Fp32 ? identity : $"{identity}+precision-{Tp7.Engine.Kernels.Precisions.Name(p)}";

    /// <param name="check">Checks of the request against the model's graph and preprocessing (e.g. a layer name), run before
    /// any weights reach a device and before any other line is printed.</param>
    /// <remarks>VGG16's weights come from <see cref="WeightsLocator.Locate"/>; when it finds none, torchvision's random
    /// init (seed 0) is drawn in memory, as every verb does, with a warning.</remarks>
    public static ModelSession Open(ParseResult parse, DeviceOptions deviceOptions, ModelOptions modelOptions,
        Action<Tp7.Engine.Graph.Graph, Preprocessing>? check = null)
    {
        deviceOptions.CheckPrecision(parse);
        string choice = modelOptions.Choose(parse);
        bool custom = modelOptions.PreprocessingOverridden(parse);
        if (choice != "vgg16")
        {
            var files = ModelCatalog.Files(choice);
            var imported = modelOptions.Import(choice, keep: false);
            var pre = modelOptions.Preprocessing(parse, ModelCatalog.DefaultPreprocessing(choice, imported));
            check?.Invoke(imported.Graph, pre);
            var dev = deviceOptions.Open(parse);
            try
            {
                var model = new ImageModel(dev, imported, ModelCatalog.NameOf(choice), pre);
                model.Log = line => Console.Error.WriteLine(line);
                string what = choice == "resnet18" ? $"resnet18 ({ModelCatalog.ResNet18Provenance})" : $"{choice} ({model.ParameterCount:N0} parameters)";
                Console.Error.WriteLine($"model: {what}; input {model.Preprocessing.Describe()}");
                return new ModelSession(dev, model, null, false, what, files, custom);
            }
            catch
            {
                dev.Dispose();
                throw;
            }
        }
        var vggPre = modelOptions.Preprocessing(parse, Preprocessing.ImageNet);
        if (vggPre.Size < Vgg16Architecture.MinInputSize) throw new ArgumentException(Vgg16Architecture.SizeTooSmall(vggPre.Size));
        check?.Invoke(Vgg16Graph.Build(), vggPre);
        var (weights, path, random) = LoadVgg16(parse.GetValue(modelOptions.Weights), "--weights");
        var device = deviceOptions.Open(parse);
        try
        {
            var model = new ImageModel(device, weights, vggPre) { Log = line => Console.Error.WriteLine(line) };
            return new ModelSession(device, model, weights, random, weights.Source, path != null ? [path] : [], custom);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    /// <summary>
    /// VGG16's weights for every verb: the file <paramref name="explicitPath"/> names (the option <paramref name="option"/>),
    /// else what the weights lookup finds (said on stderr), else torchvision's random init drawn in memory (seed 0).
    /// Path is null for the in-memory weights; Random is true for them and for random-init files.
    /// </summary>
    public static (Vgg16Weights Weights, string? Path, bool Random) LoadVgg16(string? explicitPath, string option)
    {
        var located = WeightsLocator.Locate(explicitPath, option);
        if (located != null && located.Origin != option) Console.Error.WriteLine($"weights: {located.Path} (found through {located.Origin})");
        var weights = located == null ? Vgg16Weights.RandomInit(0) : WeightsLocator.Load(located.Path);
        bool random = located == null || WeightsLocator.IsRandomInit(located.Path);
        if (random)
            Console.Error.WriteLine($"warning: {weights.Source} holds RANDOM weights, not ImageNet-trained ones: predictions and accuracies mean little. {WeightsLocator.HowToGet}" +
                                    (ModelCatalog.ResNet18Available() ? " (--model resnet18 gives an ImageNet-trained network offline.)" : ""));
        return (weights, located?.Path, random);
    }

    /// <summary>The same model (weights, preprocessing) on another device, e.g. the host backend as a reference.</summary>
    public ImageModel OpenOn(ComputeDevice device)
        => Weights != null ? new ImageModel(device, Weights, Model.Preprocessing)
            : ModelCatalog.OpenOnnx(device, Model.Name == "resnet18" ? "resnet18" : files[0], Model.Preprocessing);

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
        var table = new Table().Title(Markup.Escape($"kernel profile ({images} images; times: {profiler.Timing})"))
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
