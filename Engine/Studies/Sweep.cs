using System.Diagnostics;
using System.Globalization;
using Tp7.Engine.Features;
using Tp7.Engine.Svm;

namespace Tp7.Engine.Studies;

/// <summary>What <c>tp7 sweep</c> computes: layers × PCA sizes × C, each by stratified k-fold cross-validation on
/// the training rows, then refitted on all training rows and scored on the test rows.</summary>
/// <param name="Layers">Tap names as <see cref="FeatureSet.Layer"/> spells them.</param>
/// <param name="Cs">Ascending, positive.</param>
/// <param name="Folds">At least 2.</param>
/// <param name="PcaSizes">0 means "none" (no PCA); the others ascending.</param>
/// <param name="Seed">The SVM's coordinate order.</param>
/// <param name="MaxThreads">0: all cores.</param>
public sealed record SweepSettings(
    IReadOnlyList<string> Layers,
    IReadOnlyList<double> Cs,
    int Folds,
    IReadOnlyList<int> PcaSizes,
    SvmLoss Loss = SvmLoss.SquaredHinge,
    int Seed = 0,
    int MaxThreads = 0);

/// <summary>One (layer, PCA size, C). <paramref name="Pca"/> 0 = none. <paramref name="Dim"/>: features the SVM sees
/// (the layer's dimension, or the PCA size).</summary>
/// <param name="CvStd">Population std of the fold accuracies (numpy's ddof=0, as <c>cross_val_score(...).std()</c>).</param>
/// <param name="FoldAccuracies">In fold order.</param>
/// <param name="Selected">The C with the best mean CV accuracy of its (layer, pca); ties go to the smallest C
/// (GridSearchCV's first-best rule over ascending C).</param>
/// <param name="TestAccuracy">An SVM at this C refitted on all training rows (PCA refitted on all training rows),
/// scored on the test rows; NaN when there are no test rows.</param>
/// <param name="SvmSeconds">SVM training time of this row: its k CV fits and the refit.</param>
/// <param name="PcaSeconds">PCA fit time of this (layer, pca), folds and refit; the same on each of its rows; 0 for none.</param>
/// <param name="IterationLimitHits">Binary classifiers of this row (over folds and refit) that stopped at the iteration limit.</param>
public sealed record SweepRow(string Layer, int Pca, double C, int Dim, double CvMean, double CvStd, double[] FoldAccuracies,
    bool Selected, double TestAccuracy, double SvmSeconds, double PcaSeconds, int IterationLimitHits);

/// <summary>PCA fitted on all training features of a layer with the largest requested size (the explained-variance curve).</summary>
public sealed record SweepLayerPca(string Layer, int Dim, double[] ExplainedVarianceRatio, double FitSeconds);

public sealed record SweepResult(SweepSettings Settings, IReadOnlyList<string> Classes, int TrainCount, int TestCount,
    IReadOnlyList<SweepRow> Rows, IReadOnlyList<SweepLayerPca> Pca, double GridSeconds, int Threads, IReadOnlyList<string> Warnings);

/// <summary>Progress of a sweep: SVM fits done of total, what is being fitted, elapsed seconds.</summary>
public readonly record struct SweepProgress(int Done, int Total, string Current, double Seconds);

/// <summary>
/// The grid of <c>tp7 sweep</c>. Folds are a fixed rule that scikit-learn can replay (<see cref="FoldOf"/>); every
/// SVM is liblinear's (<see cref="LinearSvm"/>, tolerance 1e-4, 1000 iterations, bias 1: LinearSVC's defaults).
/// </summary>
public static class Sweep
{
    /// <summary>Fold of each training row: the i-th row of each class (in row order) goes to fold i mod k.</summary>
    public static int[] FoldOf(IReadOnlyList<int> labels, int folds)
    {
        if (folds < 1) throw new ArgumentException($"--folds must be at least 2, got {folds}");
        var seen = new Dictionary<int, int>();
        var fold = new int[labels.Count];
        for (int r = 0; r < labels.Count; r++)
        {
            seen.TryGetValue(labels[r], out int i);
            fold[r] = i % folds;
            seen[labels[r]] = i + 1;
        }
        return fold;
    }

    /// <summary>Every check that needs no features, in the CLI's words (--folds, --pca, --C, --layers), one line each:
    /// run before extraction. <paramref name="layerDims"/>: dimension of each requested layer;
    /// <paramref name="trainLabels"/>: labels of the training listing.</summary>
    public static void Check(SweepSettings settings, IReadOnlyDictionary<string, int> layerDims, IReadOnlyList<int> trainLabels)
    {
        var s = settings;
        if (s.Layers.Count == 0) throw new ArgumentException("--layers: give at least one layer");
        var dup = s.Layers.GroupBy(l => l).FirstOrDefault(g => g.Count() > 1);
        if (dup != null) throw new ArgumentException($"--layers: {dup.Key} is given twice");
        foreach (var l in s.Layers)
            if (!layerDims.ContainsKey(l)) throw new ArgumentException($"--layers: no dimension known for layer {l}");

        if (s.Cs.Count == 0) throw new ArgumentException("--C: give at least one value");
        for (int i = 0; i < s.Cs.Count; i++)
        {
            if (!(s.Cs[i] > 0) || double.IsInfinity(s.Cs[i])) throw new ArgumentException($"--C: {Num(s.Cs[i])} is not a positive number");
            if (i > 0 && !(s.Cs[i] > s.Cs[i - 1]))
                throw new ArgumentException($"--C: values must be ascending and distinct ({Num(s.Cs[i - 1])} comes before {Num(s.Cs[i])})");
        }

        if (s.Folds < 2) throw new ArgumentException($"--folds must be at least 2, got {s.Folds}");
        if (s.MaxThreads < 0) throw new ArgumentException($"--threads must be 0 (all cores) or positive, got {s.MaxThreads}");
        var perClass = trainLabels.GroupBy(l => l).ToDictionary(g => g.Key, g => g.Count());
        if (perClass.Count < 2) throw new ArgumentException($"the training listing needs at least 2 classes, it has {perClass.Count}");
        var smallest = perClass.OrderBy(p => p.Value).ThenBy(p => p.Key).First();
        if (smallest.Value < s.Folds)
            throw new ArgumentException($"--folds {s.Folds}: class {smallest.Key} has only {smallest.Value} training images; every class needs at least {s.Folds}");

        if (s.PcaSizes.Count == 0) throw new ArgumentException("--pca: give at least one size (0 = none)");
        // The smallest training part of a fold bounds the PCA size, as scikit-learn's PCA(n_components) refuses
        // more components than min(samples, features).
        int minTrainPart = int.MaxValue;
        foreach (var g in FoldOf(trainLabels, s.Folds).GroupBy(f => f)) minTrainPart = Math.Min(minTrainPart, trainLabels.Count - g.Count());
        for (int i = 0; i < s.PcaSizes.Count; i++)
        {
            int p = s.PcaSizes[i];
            if (p < 0) throw new ArgumentException($"--pca: {p} is negative (0 = none)");
            if (p == 0 && i > 0) throw new ArgumentException("--pca: 0 (none) must come first");
            if (i > 0 && p <= s.PcaSizes[i - 1] && s.PcaSizes[i - 1] != 0)
                throw new ArgumentException($"--pca: sizes must be ascending and distinct ({s.PcaSizes[i - 1]} comes before {p})");
            if (p > 0 && p > minTrainPart)
                throw new ArgumentException($"--pca {p}: more components than the {minTrainPart} training images of a fold's training part");
            if (p > 0)
                foreach (var l in s.Layers)
                    if (p > layerDims[l]) throw new ArgumentException($"--pca {p}: more components than layer {l}'s {layerDims[l]} features");
            if (p > 0) throw new ArgumentException($"--pca {p}: PCA is not in this build yet; use --pca 0");
        }
    }

    /// <summary>Runs the grid. <paramref name="train"/>, <paramref name="test"/>: one FeatureSet per layer, the same rows
    /// in the same order for every layer (L2-normalised as extracted).</summary>
    public static SweepResult Run(IReadOnlyDictionary<string, FeatureSet> train, IReadOnlyDictionary<string, FeatureSet> test,
        SweepSettings settings, Action<SweepProgress>? progress = null, CancellationToken cancellation = default)
    {
        var s = settings;
        var clock = Stopwatch.StartNew();
        var (classes, yTrain, yTest) = CheckFeatures(train, test, s);
        int nTrain = yTrain.Length, nTest = yTest.Length, k = s.Folds;
        Check(s, s.Layers.ToDictionary(l => l, l => train[l].D), yTrain);
        int[] fold = FoldOf(yTrain, k);
        int threads = s.MaxThreads > 0 ? s.MaxThreads : Environment.ProcessorCount;

        int total = s.Layers.Count * s.PcaSizes.Count * s.Cs.Count * (k + 1), done = 0;
        var rows = new List<SweepRow>();
        var warnings = new List<string>();
        foreach (var layer in s.Layers)
        {
            var Xtr = train[layer];
            var Xte = test[layer];
            foreach (int pca in s.PcaSizes)
            {
                var layerRows = new List<SweepRow>();
                foreach (double C in s.Cs)
                {
                    cancellation.ThrowIfCancellationRequested();
                    var options = new SvmOptions(C: C, Loss: s.Loss, Seed: s.Seed);
                    var accuracies = new double[k];
                    double svmSeconds = 0;
                    int hits = 0;
                    for (int f = 0; f <= k; f++)
                    {
                        string current = $"{layer} {(pca == 0 ? "" : $"pca {pca} ")}C={Num(C)} {(f < k ? $"fold {f + 1}/{k}" : "refit")}";
                        progress?.Invoke(new(done, total, current, clock.Elapsed.TotalSeconds));
                        int[] fitRows = f < k ? [.. Enumerable.Range(0, nTrain).Where(r => fold[r] != f)] : [.. Enumerable.Range(0, nTrain)];
                        long t0 = Stopwatch.GetTimestamp();
                        var model = LinearSvm.TrainOneVsRest(Gather(Xtr.X, Xtr.D, fitRows), fitRows.Length, Xtr.D,
                            [.. fitRows.Select(r => yTrain[r])], options);
                        svmSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
                        hits += model.Warnings.Count;
                        if (f < k)
                        {
                            int[] evalRows = [.. Enumerable.Range(0, nTrain).Where(r => fold[r] == f)];
                            var pred = model.PredictBatch(Gather(Xtr.X, Xtr.D, evalRows), evalRows.Length);
                            accuracies[f] = Accuracy(pred, [.. evalRows.Select(r => yTrain[r])]);
                        }
                        else
                        {
                            double testAccuracy = nTest == 0 ? double.NaN : Accuracy(model.PredictBatch(Xte.X, nTest), yTest);
                            var (mean, std) = MeanStd(accuracies);
                            layerRows.Add(new SweepRow(layer, pca, C, Xtr.D, mean, std, accuracies, false, testAccuracy, svmSeconds, 0, hits));
                        }
                        done++;
                    }
                    if (hits > 0)
                        warnings.Add($"{layer}{(pca == 0 ? "" : $" pca {pca}")} C={Num(C)}: {hits} binary classifiers stopped at the iteration limit (1000) before the tolerance 1e-4");
                }
                rows.AddRange(MarkSelected(layerRows));
            }
        }
        progress?.Invoke(new(done, total, "done", clock.Elapsed.TotalSeconds));
        return new SweepResult(s, classes, nTrain, nTest, rows, [], clock.Elapsed.TotalSeconds, threads, warnings);
    }

    /// <summary>Marks the row with the best mean CV accuracy; the first (smallest C) of equal means wins.</summary>
    internal static IEnumerable<SweepRow> MarkSelected(IReadOnlyList<SweepRow> rowsOfOneConfiguration)
    {
        int best = 0;
        for (int i = 1; i < rowsOfOneConfiguration.Count; i++)
            if (rowsOfOneConfiguration[i].CvMean > rowsOfOneConfiguration[best].CvMean) best = i;
        return rowsOfOneConfiguration.Select((r, i) => r with { Selected = i == best });
    }

    /// <summary>Mean and population std (ddof = 0), both as numpy computes them.</summary>
    internal static (double Mean, double Std) MeanStd(double[] v)
    {
        double mean = v.Sum() / v.Length;
        double ss = 0;
        foreach (var x in v) ss += (x - mean) * (x - mean);
        return (mean, Math.Sqrt(ss / v.Length));
    }

    static double Accuracy(int[] predicted, int[] truth)
    {
        int correct = 0;
        for (int i = 0; i < truth.Length; i++) if (predicted[i] == truth[i]) correct++;
        return correct / (double)truth.Length;
    }

    internal static float[] Gather(float[] X, int d, int[] rows)
    {
        var g = new float[(long)rows.Length * d];
        for (int r = 0; r < rows.Length; r++) X.AsSpan(rows[r] * d, d).CopyTo(g.AsSpan(r * d, d));
        return g;
    }

    static (IReadOnlyList<string> Classes, int[] YTrain, int[] YTest) CheckFeatures(
        IReadOnlyDictionary<string, FeatureSet> train, IReadOnlyDictionary<string, FeatureSet> test, SweepSettings s)
    {
        if (s.Layers.Count == 0) throw new ArgumentException("--layers: give at least one layer");
        FeatureSet? first = null, firstTest = null;
        foreach (var l in s.Layers)
        {
            if (!train.TryGetValue(l, out var tr)) throw new ArgumentException($"--layers: no training features for layer {l}");
            if (!test.TryGetValue(l, out var te)) throw new ArgumentException($"--layers: no test features for layer {l}");
            if (te.D != tr.D) throw new ArgumentException($"layer {l}: test features have {te.D} dimensions, training features {tr.D}");
            first ??= tr;
            firstTest ??= te;
            if (!te.Classes.SequenceEqual(tr.Classes))
                throw new ArgumentException($"layer {l}: the test listing's classes are not the training listing's");
            if (!tr.Paths.SequenceEqual(first.Paths) || !tr.Labels.SequenceEqual(first.Labels))
                throw new ArgumentException($"layer {l}: its training rows are not those of layer {first.Layer} (same images in the same order)");
            if (!te.Paths.SequenceEqual(firstTest.Paths) || !te.Labels.SequenceEqual(firstTest.Labels))
                throw new ArgumentException($"layer {l}: its test rows are not those of layer {first.Layer} (same images in the same order)");
        }
        return (first!.Classes, first.Labels, firstTest!.Labels);
    }

    static string Num(double v) => v.ToString("g6", CultureInfo.InvariantCulture);
}
