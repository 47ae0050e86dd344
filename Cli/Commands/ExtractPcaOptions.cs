using System.CommandLine;
using Tp7.Engine.Analysis;
using Tp7.Engine.Data;
using Tp7.Engine.Features;

namespace Tp7.Cli.Commands;

/// <summary>
/// `tp7 extract --pca K | --pca-model FILE`: PCA-reduced features beside the extracted ones (Engine/Analysis/PcaFeatures).
/// --pca fits on the training images of the listing only; --pca-model projects with a model an earlier --pca saved.
/// </summary>
sealed class ExtractPcaOptions
{
    readonly Option<int?> pca = new Option<int?>("--pca")
    {
        Description = "Also write OUT.pcaK.npy (+ .json): features reduced to K principal components fitted on the training images, " +
                      "and the PCA as OUT.pcaK.safetensors",
    }.AtLeast(1);
    readonly Option<string?> pcaModel = new("--pca-model") { Description = "Also write OUT.pcaK.npy projected with a PCA saved by an earlier --pca (e.g. for --subset test)" };
    PcaModel? loaded;

    public ExtractPcaOptions(Command command)
    {
        command.Options.Add(pca);
        command.Options.Add(pcaModel);
    }

    /// <summary>Every check that needs no extraction: run before the first image is decoded.</summary>
    /// <param name="sharded">A shard of the listing (--shard/--shards): its reduced rows could not be merged.</param>
    public void Check(ParseResult parse, string subset, Dataset ds, int dimension, bool sharded = false)
    {
        int? k = parse.GetValue(pca);
        string? modelPath = parse.GetValue(pcaModel);
        if (sharded && (k != null || modelPath != null))
            throw new ArgumentException($"{(k != null ? "--pca" : "--pca-model")} does not go with --shard/--shards: merge the shards first (tp7 merge), then run " +
                                        "this extract without --shard, which reads every feature from the shared cache, and reduces them");
        if (k != null && modelPath != null)
            throw new ArgumentException("--pca and --pca-model: give one (--pca fits a new PCA, --pca-model projects with a saved one)");
        if (modelPath != null)
        {
            if (!File.Exists(modelPath)) throw new FileNotFoundException($"--pca-model {modelPath}: no such file");
            loaded = PcaModel.Load(modelPath);
            if (loaded.InputDim != dimension)
                throw new ArgumentException($"--pca-model {modelPath}: fitted on {loaded.InputDim}-dimensional features, this layer gives {dimension}");
        }
        if (k is not { } K) return;
        if (subset == "test")
            throw new ArgumentException("--pca fits on the training images and --subset test has none: project with a saved PCA (--pca-model OUT.pcaK.safetensors)");
        if (K > Math.Min(ds.Train.Count, dimension))
            throw new ArgumentException($"--pca {K}: at most min(training images, feature dimension) = min({ds.Train.Count}, {dimension}) = {Math.Min(ds.Train.Count, dimension)} components");
    }

    /// <summary>Writes the reduced features (and a fitted model) beside <paramref name="outPath"/> and says so.</summary>
    public void Write(ParseResult parse, string outPath, FeatureSet f, Dataset ds, FeatureExtractor extractor, string modelName)
    {
        PcaFeatures.Written w;
        if (parse.GetValue(pca) is { } k)
            w = PcaFeatures.FitAndWrite(outPath, f, ds.Train.Select(i => i.Path).ToHashSet(StringComparer.Ordinal), k, extractor.Preprocessing, modelName);
        else if (loaded != null)
            w = PcaFeatures.ProjectAndWrite(outPath, f, parse.GetValue(pcaModel)!, extractor.Preprocessing, modelName);
        else return;
        var ratios = w.Model.ExplainedVarianceRatio;
        string fitted = w.ModelPath != null
            ? $"PCA fitted on {w.FittedRows} training rows in {w.Model.FitSeconds:F2} s, written to {w.ModelPath}"
            : $"projected with {parse.GetValue(pcaModel)}";
        Console.WriteLine($"wrote {w.FeaturesPath}: {w.Reduced.N} x {w.Reduced.D} ({w.Reduced.Layer}); {fitted}; explained variance " +
                          $"{ratios.Sum():P1} (first components {string.Join(", ", ratios.Take(5).Select(r => r.ToString("P1")))})");
    }
}
