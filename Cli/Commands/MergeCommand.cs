using System.CommandLine;
using Tp7.Engine.Features;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 merge`: the feature files of every shard of an extraction joined into the file one unsharded extraction writes.</summary>
static class MergeCommand
{
    public static Command Create()
    {
        var shards = new Argument<string[]>("shards")
        {
            Description = "The .npy of every shard ('tp7 extract --shard' or --shards), in any order; each .json sidecar is read beside it",
            Arity = ArgumentArity.OneOrMore,
        };
        var output = new Option<string?>("--out") { Description = "Merged .npy (its .json goes beside it; folders are created)", Required = true }.Writable();
        var command = new Command("merge",
            "Join shards' features in listing order, checking they are from the same model, weights, layer, normalisation, preprocessing and " +
            "listing and cover it once; the result equals one unsharded 'tp7 extract' (docs/scale-out.md)")
            { shards, output };
        command.SetHandler(parse =>
        {
            var outPath = OptionChecks.CreateParent(parse.GetValue(output)!);
            var m = Sharding.Merge(parse.GetValue(shards)!, outPath);
            var side = m.Sidecar;
            Console.WriteLine($"merged {m.Shards} shards of {m.ListingSize} images: wrote {outPath}: {m.Rows} x {m.Dimension} " +
                              $"({side.Layer}{(side.L2 ? ", L2-normalised" : "")}), {m.Skipped} skipped, and {FeatureFile.SidecarPath(outPath)}");
            return 0;
        });
        return command;
    }
}
