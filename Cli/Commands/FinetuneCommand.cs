using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Tp7.Engine.Data;
using Tp7.Engine.Features;
using Tp7.Engine.Model;
using Tp7.Engine.Reporting;
using Tp7.Engine.Training;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 finetune`: VGG16 with a new fully connected head, trained frozen or end to end.</summary>
static class FinetuneCommand
{
    public static Command Create()
    {
        var tune = new Option<string>("--tune") { Description = "head (new fc8 on cached relu7 features), classifier (fc6-fc8), all (full backpropagation), from:TAP (e.g. from:conv4_1)", DefaultValueFactory = _ => "head" };
        var epochs = new Option<int>("--epochs") { Description = "Passes over the training images", DefaultValueFactory = _ => 10 }.AtLeast(1);
        var batch = new Option<int>("--batch") { Description = "Images per optimiser step", DefaultValueFactory = _ => 32 }.AtLeast(1);
        var lr = new Option<double>("--lr") { Description = "Learning rate", DefaultValueFactory = _ => 0.01 }.Positive();
        var momentum = new Option<double>("--momentum") { Description = "SGD momentum", DefaultValueFactory = _ => 0.9 };
        var wd = new Option<double>("--wd") { Description = "Weight decay (SGD: L2 added to the gradient; AdamW: decoupled)", DefaultValueFactory = _ => 5e-4 }.AtLeast(0.0);
        var optimizer = new Option<string>("--optimizer") { Description = "sgd or adamw", DefaultValueFactory = _ => "sgd" };
        optimizer.AcceptOnlyFromAmong("sgd", "adamw");
        var schedule = new Option<string>("--schedule") { Description = "Learning rate per epoch: none, step (x0.1 every --step-size epochs), cosine", DefaultValueFactory = _ => "none" };
        schedule.AcceptOnlyFromAmong("none", "step", "cosine");
        var stepSize = new Option<int>("--step-size") { Description = "Epochs between step-schedule decays", DefaultValueFactory = _ => 10 }.AtLeast(1);
        var augment = new Option<string?>("--augment") { Description = "flip, crop or flip,crop (seeded; not with --tune head)" };
        var dropout = new Option<float>("--dropout") { Description = "Drop probability of classifier.2/.5 in training", DefaultValueFactory = _ => 0.5f };
        var noShuffle = new Option<bool>("--no-shuffle") { Description = "Batches in listing order (classes sorted, files by ordinal name)" };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Stop after this many optimiser steps and write every output" }.AtLeast(1);
        var size = new Option<int>("--size") { Description = "Input height and width (at least 32)", DefaultValueFactory = _ => 224 }.Vgg16Size();
        var init = new Option<string?>("--init") { Description = "Start from this torchvision-keyed VGG16 (its classifier.6 is the initial head when it has one row per class); " + CliCommon.WeightsLookup };
        var resume = new Option<string?>("--resume") { Description = "Continue the run whose --out folder this is" };
        var output = new Option<string>("--out") { Description = "Output folder (created with the folders above it)", DefaultValueFactory = _ => "out/finetune" }.Writable();
        var noCache = new Option<bool>("--no-cache") { Description = "Neither read nor write the feature cache (--tune head)" };
        var model = new Option<string?>("--model") { Description = "vgg16 (default), resnet18 or PATH.onnx; other models than vgg16 take --tune head: a new Linear on their feature layer" };
        var layer = new Option<string?>("--layer") { Description = "With --model resnet18|PATH.onnx: the feature layer the new head reads (default: the input of the last fully connected layer, else the output)" };
        var command = new Command("finetune", "Replace a network's last layer and train it (frozen features, or full backpropagation for VGG16)")
        {
            tune, epochs, batch, lr, momentum, wd, optimizer, schedule, stepSize, augment,
            dropout, noShuffle, maxSteps, size, init, resume, output, noCache, model, layer,
        };
        var dataset = new DatasetOptions(command, "Seed of the split, the new head, shuffling, dropout and augmentation");
        var seed = dataset.Seed;
        var device = new DeviceOptions(command);
        command.SetHandler(parse =>
        {
            var aug = (parse.GetValue(augment) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (var a in aug)
                if (a is not ("flip" or "crop")) throw new ArgumentException($"--augment: '{a}' is not flip or crop");
            var settings = new FinetuneSettings
            {
                Tune = parse.GetValue(tune)!, Epochs = parse.GetValue(epochs), Batch = parse.GetValue(batch), Lr = parse.GetValue(lr),
                Momentum = parse.GetValue(momentum), WeightDecay = parse.GetValue(wd), Optimizer = parse.GetValue(optimizer)!,
                Schedule = parse.GetValue(schedule)!, StepSize = parse.GetValue(stepSize), Flip = aug.Contains("flip"), Crop = aug.Contains("crop"),
                Dropout = parse.GetValue(dropout), Shuffle = !parse.GetValue(noShuffle), MaxSteps = parse.GetValue(maxSteps),
                Seed = parse.GetValue(seed), Size = parse.GetValue(size),
            };
            settings.Validate();
            var outDir = parse.GetValue(output)!;
            var resumeDir = parse.GetValue(resume);
            if (resumeDir != null && !File.Exists(Path.Combine(resumeDir, Finetune.CheckpointName)))
                throw new FileNotFoundException($"--resume: {Path.Combine(resumeDir, Finetune.CheckpointName)}: no checkpoint there (finetune writes one after each epoch)");

            string choice = ModelCatalog.Check(parse.GetValue(model) ?? "vgg16");
            if (choice != "vgg16")
            {
                if (settings.Tune != "head")
                    throw new ArgumentException($"--tune {settings.Tune}: --model {choice} takes --tune head only (full backpropagation through imported networks is not supported yet)");
                if (parse.GetValue(init) != null) throw new ArgumentException($"--init holds VGG16 weights; it does not go with --model {choice}");
            }
            else if (parse.GetValue(layer) != null) throw new ArgumentException("--layer goes with --model resnet18|PATH.onnx (VGG16's head reads relu7)");
            if (choice == "vgg16") WeightsLocator.Locate(parse.GetValue(init), "--init");
            dataset.Check(parse);
            device.CheckPrecision(parse);

            OptionChecks.CreateFolder(outDir);
            var ds = dataset.Open(parse);
            if (ds.Classes.Count < 2) throw new ArgumentException($"{ds.Root}: {ds.Classes.Count} class; fine-tuning a classifier needs at least 2");
            if (choice != "vgg16")
                return RunImported(parse, choice, parse.GetValue(layer), ds, settings, outDir, resumeDir, device, parse.GetValue(noCache));

            var (start, path, random) = ModelSession.LoadVgg16(parse.GetValue(init), "--init");
            string sha = ModelSession.WithPrecision(path == null ? "in-memory-random-init-seed0" : FeatureCache.HashFile(path), device.PrecisionOf(parse));
            start = Finetune.StartingWeights(start, ds.Classes.Count, settings.Seed);

            using var dev = device.Open(parse);
            var progress = new ProgressLine();
            var job = Job(ds, settings, outDir, dev, progress, parse.GetValue(noCache));
            var result = job.Run(start, sha, resumeDir);
            progress.Finish();
            FinetuneReportWriter.Write(outDir, result);
            Print(result, outDir);
            if (random) Console.WriteLine($"NOTE: training started from RANDOM weights ({start.Source}); the accuracy means little. {WeightsLocator.HowToGet}");
            return 0;
        });
        return command;
    }

    static int RunImported(ParseResult parse, string choice, string? layer, Dataset ds, FinetuneSettings settings, string outDir, string? resumeDir,
        DeviceOptions device, bool noCache)
    {
        var imported = ModelCatalog.Import(choice);
        var pre = ModelCatalog.DefaultPreprocessing(choice, imported);
        if (layer != null) ImageModel.CanonicalLayer(imported.Graph, layer); // a bad --layer fails before any work
        using var dev = device.Open(parse);
        using var m = new ImageModel(dev, imported, ModelCatalog.NameOf(choice), pre) { Log = line => Console.Error.WriteLine(line) };
        Console.Error.WriteLine($"model: {m.Name}, head on {m.CanonicalLayer(layer ?? m.DefaultLayer)} ({m.LayerShape(layer ?? m.DefaultLayer).PerSample} features); input {pre.Describe()}");
        string identity = ModelSession.WithPrecision(ModelCatalog.Identity(ModelCatalog.Files(choice), pre, customPreprocessing: false), dev.Precision); // the key `run` and `extract` use
        var progress = new ProgressLine();
        var result = Job(ds, settings, outDir, dev, progress, noCache).RunHead(m, identity, layer, resumeDir);
        progress.Finish();
        FinetuneReportWriter.Write(outDir, result);
        Print(result, outDir);
        return 0;
    }

    /// <summary>The training job, its log lines and progress on one status line.</summary>
    static Finetune Job(Dataset ds, FinetuneSettings settings, string outDir, Tp7.Engine.Devices.ComputeDevice dev, ProgressLine progress, bool noCache)
        => new(ds, settings, outDir, dev, line => { progress.Finish(); Console.Error.WriteLine(line); })
        {
            Cache = noCache ? null : FeatureCache.Default(),
            ExtractProgress = progress.Report,
            Progress = p => progress.Report($"epoch {p.Epoch}/{p.Epochs}", new ExtractProgress(p.Step, p.StepsPerEpoch, 0),
                $"loss {p.Loss:F4}  {p.ImagesPerSecond,6:F1} img/s  ETA {TimeSpan.FromSeconds(Math.Max(0, p.EtaSeconds)):h\\:mm\\:ss}"),
        };

    static void Print(FinetuneResult r, string outDir)
    {
        var rep = r.Report;
        var names = r.Dataset.Classes;
        var table = new Table().AddColumn("class").AddColumn(new TableColumn("test").RightAligned()).AddColumn(new TableColumn("recall").RightAligned())
            .AddColumn(new TableColumn("precision").RightAligned()).AddColumn(new TableColumn("F1").RightAligned());
        for (int k = 0; k < names.Count; k++)
            table.AddRow(Markup.Escape(names[k]), rep.Support[k].ToString(), rep.Recall[k].ToString("P1", CultureInfo.InvariantCulture),
                rep.Precision[k].ToString("P1", CultureInfo.InvariantCulture), rep.F1[k].ToString("F3", CultureInfo.InvariantCulture));
        AnsiConsole.Write(table);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"accuracy: {rep.Accuracy:P2} ({rep.NumSamples} test images, {names.Count} classes), --tune {r.Settings.Tune}, {r.Epochs.Count} epoch(s), {r.Steps} steps{(r.StoppedAtMaxSteps ? " (stopped at --max-steps)" : "")}"));
        Console.WriteLine(r.ModelPath.EndsWith("head.safetensors", StringComparison.Ordinal)
            ? $"model: {r.ModelPath} (head.weight, head.bias; class names, model and layer in its metadata)"
            : $"model: {r.ModelPath} (torchvision keys, classifier.6 of shape ({names.Count}, 4096), class names in its metadata)");
        Console.WriteLine($"report: {Path.Combine(outDir, "index.html")} (report.json, predictions.csv, curves.png, confusion.png); checkpoint: {Path.Combine(outDir, Finetune.CheckpointName)}");
    }
}
