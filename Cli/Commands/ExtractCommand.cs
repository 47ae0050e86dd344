using System.CommandLine;
using Tp7.Engine.Data;
using Tp7.Engine.Features;
using Tp7.Engine.Model;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 extract`: L2-normalised deep features of a dataset at one layer, as .npy + .json; of one shard of it with --shard.</summary>
static class ExtractCommand
{
    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "Dataset folder (class folders, or train/ + test/)", Required = true };
        var layer = new Option<string?>("--layer") { Description = "VGG16: pool5, fc6, relu6, fc7, relu7 (default), fc8 or any tap; other models: a tap or any value name (default: the input of the last fully connected layer, else the output)" };
        var batch = new Option<int>("--batch") { Description = "Images per forward pass", DefaultValueFactory = _ => 32 }.AtLeast(1);
        var noL2 = new Option<bool>("--no-l2") { Description = "Keep raw features (no L2 normalisation of rows)" };
        var subset = new Option<string>("--subset") { Description = "train, test or all (train then test): the listing extracted", DefaultValueFactory = _ => "all" };
        subset.AcceptOnlyFromAmong("train", "test", "all");
        var perClass = new Option<int?>("--train-per-class") { Description = "Split one folder: this many training images per class" }.AtLeast(1);
        var seed = new Option<int>("--seed") { Description = "Seed of the split", DefaultValueFactory = _ => 0 };
        var output = new Option<string?>("--out")
        {
            Description = $"Output .npy (a .json with rows, labels and classes goes beside it; folders are created); {ShardOptions.Placeholder} is replaced by the shard's index",
            Required = true,
        }.Writable();
        var noCache = new Option<bool>("--no-cache") { Description = "Neither read nor write the feature cache (an interrupted run then keeps nothing)" };
        var command = new Command("extract",
            "Extract deep features of a dataset at one layer. Features are cached as they are computed: an interrupted run (Ctrl-C, SIGTERM) " +
            "says how many it kept, and the same command resumes. --shard/--shards spread the listing over a cluster's tasks (docs/scale-out.md)")
            { data, layer, batch, noL2, subset, perClass, seed, output, noCache };
        var shards = new ShardOptions(command);
        var model = new ModelOptions(command);
        var device = new DeviceOptions(command);
        var pca = new ExtractPcaOptions(command);
        command.SetHandler(parse =>
        {
            model.Check(parse);
            var shard = shards.Resolve(parse);
            var outPath = ShardOptions.OutPath(parse.GetValue(output)!, shard);
            device.CheckPrecision(parse);
            var ds = DatasetLoader.Open(parse.GetValue(data)!, parse.GetValue(perClass), parse.GetValue(seed));
            var (items, listing, block) = List(ds, parse.GetValue(subset)!, shard);

            // A misspelt --layer fails before any weights are read.
            using var session = ModelSession.Open(parse, device, model,
                check: (graph, _) => { if (parse.GetValue(layer) is { } l) ImageModel.CanonicalLayer(graph, l); });
            var cache = parse.GetValue(noCache) ? null : FeatureCache.Default();
            var extractor = new FeatureExtractor(session.Model, session.WeightsSha256, parse.GetValue(layer), !parse.GetValue(noL2),
                parse.GetValue(batch), cache);
            pca.Check(parse, parse.GetValue(subset)!, ds, extractor.Dimension, sharded: shard != null);
            if (ExtractUnlessInterrupted(extractor, items, ds.Classes, cache, out int signalExit) is not { } f) return signalExit;
            FeatureFile.Write(OptionChecks.CreateParent(outPath), f, extractor.Preprocessing, session.Model.Name, listing, block);
            foreach (var skip in f.Skipped) Console.Error.WriteLine($"skipped: {skip.Path}: {skip.Reason}");
            Console.WriteLine($"wrote {outPath}: {f.N} x {f.D} ({f.Layer}{(f.L2 ? ", L2-normalised" : "")}) and {FeatureFile.SidecarPath(outPath)}");
            Console.WriteLine($"{f.Stats.Computed} computed ({f.Stats.ComputeImagesPerSecond:F1} img/s on the network), {f.Stats.Cached} from cache, " +
                              $"decode {f.Stats.DecodePerCore:F1} img/s per core x {f.Stats.DecodeWorkers}, {f.Skipped.Count} skipped, {f.Stats.Seconds:F1} s");
            pca.Write(parse, outPath, f, ds, extractor, session.Model.Name);
            return 0;
        });
        return command;
    }

    /// <summary>The listing --subset names (train then test for all), its fingerprint, and the block of it this shard takes; prints one line.</summary>
    static (IReadOnlyList<DatasetItem> Items, FeatureFile.ListingInfo Listing, FeatureFile.ShardInfo? Block) List(Dataset ds, string subset, Shard? shard)
    {
        var listing = subset switch
        {
            "train" => ds.Train,
            "test" => ds.Test,
            _ => ds.Train.Concat(ds.Test).ToList(),
        };
        var block = shard is { } s ? Sharding.Describe(s, listing.Count) : null;
        Console.Error.WriteLine($"{ds.Root}: {ds.Layout}, {ds.Classes.Count} classes, {listing.Count} images ({subset})" +
                                (block != null ? $"; shard {shard}: {Sharding.DescribeRange(block.Start, block.End)}" : ""));
        return (shard is { } t ? t.Slice(listing) : listing, Sharding.Fingerprint(ds.Root, listing, ds.Classes), block);
    }

    /// <summary>
    /// The features, or null when SIGINT or SIGTERM stopped the extraction: then it has said how many features the cache
    /// holds (every batch's are written as it finishes) and that the same command resumes, and <paramref name="exitCode"/>
    /// is the shell's status for that signal.
    /// </summary>
    static FeatureSet? ExtractUnlessInterrupted(FeatureExtractor extractor, IReadOnlyList<DatasetItem> items, IReadOnlyList<string> classes,
        FeatureCache? cache, out int exitCode)
    {
        exitCode = 0;
        var progress = new ProgressLine();
        var last = new ExtractProgress(0, items.Count, 0);
        using var interruption = new Interruption();
        try
        {
            var f = extractor.Extract(items, classes, p => { last = p; progress.Report("features", p); }, interruption.Token);
            progress.Finish();
            return f;
        }
        catch (OperationCanceledException) when (interruption.Signal is { } signal)
        {
            progress.Finish();
            Console.Error.WriteLine($"tp7 extract: interrupted ({signal}) after {last.Done} of {items.Count} images; " + (cache != null
                ? $"their features are cached in {cache.Root}: run the same command again to resume"
                : "--no-cache kept none of them: run without it to keep features as they are computed"));
            exitCode = interruption.ExitCode;
            return null;
        }
    }
}
