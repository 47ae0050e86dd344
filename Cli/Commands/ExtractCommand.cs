using System.CommandLine;
using Tp7.Engine.Data;
using Tp7.Engine.Features;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 extract`: L2-normalised deep features of a dataset at one layer, as .npy + .json.</summary>
static class ExtractCommand
{
    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "Dataset folder (class folders, or train/ + test/)", Required = true };
        var layer = new Option<string?>("--layer") { Description = "VGG16: pool5, fc6, relu6, fc7, relu7 (default), fc8 or any tap; other models: a tap or any value name (default: the input of the last fully connected layer, else the output)" };
        var batch = new Option<int>("--batch") { Description = "Images per forward pass", DefaultValueFactory = _ => 32 };
        var noL2 = new Option<bool>("--no-l2") { Description = "Keep raw features (no L2 normalisation of rows)" };
        var subset = new Option<string>("--subset") { Description = "train, test or all", DefaultValueFactory = _ => "all" };
        subset.AcceptOnlyFromAmong("train", "test", "all");
        var perClass = new Option<int?>("--train-per-class") { Description = "Split one folder: this many training images per class" };
        var seed = new Option<int>("--seed") { Description = "Seed of the split", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "Output .npy (a .json with rows, labels and classes goes beside it)", Required = true };
        var noCache = new Option<bool>("--no-cache") { Description = "Neither read nor write the feature cache" };
        var command = new Command("extract", "Extract deep features of a dataset at one layer")
            { data, layer, batch, noL2, subset, perClass, seed, output, noCache };
        var model = new ModelOptions(command);
        var device = new DeviceOptions(command);
        var pca = new ExtractPcaOptions(command);
        command.SetHandler(parse =>
        {
            model.Check(parse);
            var ds = DatasetLoader.Open(parse.GetValue(data)!, parse.GetValue(perClass), parse.GetValue(seed));
            var items = parse.GetValue(subset) switch
            {
                "train" => ds.Train,
                "test" => ds.Test,
                _ => ds.Train.Concat(ds.Test).ToList(),
            };
            Console.Error.WriteLine($"{ds.Root}: {ds.Layout}, {ds.Classes.Count} classes, {items.Count} images ({parse.GetValue(subset)})");
            using var session = ModelSession.Open(parse, device, model);
            var extractor = new FeatureExtractor(session.Model, session.WeightsSha256, parse.GetValue(layer), !parse.GetValue(noL2),
                Math.Max(1, parse.GetValue(batch)), parse.GetValue(noCache) ? null : FeatureCache.Default());
            pca.Check(parse, parse.GetValue(subset)!, ds, extractor.Dimension);
            var progress = new ProgressLine();
            var f = extractor.Extract(items, ds.Classes, p => progress.Report("features", p));
            progress.Finish();
            var outPath = parse.GetValue(output)!;
            FeatureFile.Write(outPath, f, extractor.Preprocessing, session.Model.Name);
            foreach (var s in f.Skipped) Console.Error.WriteLine($"skipped: {s.Path}: {s.Reason}");
            Console.WriteLine($"wrote {outPath}: {f.N} x {f.D} ({f.Layer}{(f.L2 ? ", L2-normalised" : "")}) and {FeatureFile.SidecarPath(outPath)}");
            Console.WriteLine($"{f.Stats.Computed} computed ({f.Stats.ComputeImagesPerSecond:F1} img/s on the network), {f.Stats.Cached} from cache, " +
                              $"decode {f.Stats.DecodePerCore:F1} img/s per core x {f.Stats.DecodeWorkers}, {f.Skipped.Count} skipped, {f.Stats.Seconds:F1} s");
            pca.Write(parse, outPath, f, ds, extractor, session.Model.Name);
            return 0;
        });
        return command;
    }
}
