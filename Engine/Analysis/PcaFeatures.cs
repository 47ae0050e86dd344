using Tp7.Engine.Features;
using Tp7.Engine.Imaging;

namespace Tp7.Engine.Analysis;

/// <summary>
/// PCA-reduced feature files beside extracted ones: F.npy gives F.pcaK.npy (+ its .json, layer "relu7+pcaK"), which
/// `tp7 svm train` reads like any feature file, and F.pcaK.safetensors, the <see cref="PcaModel"/> that projects new
/// features the same way. The PCA is fitted on the training rows only, so no test image shapes the projection.
/// </summary>
public static class PcaFeatures
{
    public sealed record Written(string FeaturesPath, string? ModelPath, PcaModel Model, int FittedRows, FeatureSet Reduced);

    static string Stem(string npyPath) => Path.ChangeExtension(npyPath, null);
    public static string FeaturesPath(string npyPath, int k) => $"{Stem(npyPath)}.pca{k}.npy";
    public static string ModelPath(string npyPath, int k) => $"{Stem(npyPath)}.pca{k}.safetensors";

    /// <summary>The layer name a reduced file records, e.g. relu7+pca128.</summary>
    public static string LayerName(string layer, int k) => $"{layer}+pca{k}";

    /// <summary>
    /// <paramref name="f"/>'s rows projected by <paramref name="model"/>: the same paths, labels and classes, the
    /// layer renamed. The model must have been fitted on features of <paramref name="f"/>'s dimension.
    /// </summary>
    public static FeatureSet Reduce(FeatureSet f, PcaModel model, string? source = null)
    {
        if (model.InputDim != f.D)
            throw new ArgumentException($"{source ?? "PCA model"}: fitted on {model.InputDim}-dimensional features, these ({f.Layer}) have {f.D}");
        return f with { X = model.Transform(f.X, f.N), D = model.Components, Layer = LayerName(f.Layer, model.Components) };
    }

    /// <summary>
    /// Fits a K-component PCA on the rows of <paramref name="f"/> whose path is in <paramref name="trainPaths"/>
    /// (rows of skipped images are simply absent), projects every row, and writes F.pcaK.npy/.json and the model
    /// F.pcaK.safetensors beside <paramref name="npyPath"/>.
    /// </summary>
    public static Written FitAndWrite(string npyPath, FeatureSet f, IReadOnlySet<string> trainPaths, int k,
        Preprocessing? preprocessing = null, string? modelName = null)
    {
        var rows = Enumerable.Range(0, f.N).Where(i => trainPaths.Contains(f.Paths[i])).ToArray();
        if (rows.Length < 2)
            throw new ArgumentException($"PCA needs at least 2 training images with features, {npyPath} has {rows.Length}");
        if (k > Math.Min(rows.Length, f.D))
            throw new ArgumentException(
                $"PCA with {k} components needs at most min(training images, feature dimension) = min({rows.Length}, {f.D}) = {Math.Min(rows.Length, f.D)}");
        var train = new float[(long)rows.Length * f.D];
        for (int r = 0; r < rows.Length; r++) f.Row(rows[r]).CopyTo(train.AsSpan(r * f.D, f.D));
        var model = PcaModel.Fit(train, rows.Length, f.D, k);
        string modelPath = ModelPath(npyPath, k);
        model.Save(modelPath);
        var reduced = Reduce(f, model);
        string path = FeaturesPath(npyPath, k);
        FeatureFile.Write(path, reduced, preprocessing, modelName);
        return new Written(path, modelPath, model, rows.Length, reduced);
    }

    /// <summary>Projects every row of <paramref name="f"/> with a saved model and writes F.pcaK.npy/.json.</summary>
    public static Written ProjectAndWrite(string npyPath, FeatureSet f, string modelPath, Preprocessing? preprocessing = null, string? modelName = null)
    {
        var model = PcaModel.Load(modelPath);
        var reduced = Reduce(f, model, modelPath);
        string path = FeaturesPath(npyPath, model.Components);
        FeatureFile.Write(path, reduced, preprocessing, modelName);
        return new Written(path, null, model, 0, reduced);
    }
}
