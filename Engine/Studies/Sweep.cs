using System.Diagnostics;
using System.Globalization;
using Tp7.Engine.Analysis;
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
            if (p == 0 && i > 0)
                throw new ArgumentException(s.PcaSizes.Take(i).Contains(0)
                    ? "--pca: no PCA is asked for twice ('none' and 0 both mean it)"
                    : "--pca: none (0) must come first, then the sizes in ascending order");
            if (i > 0 && p <= s.PcaSizes[i - 1] && s.PcaSizes[i - 1] != 0)
                throw new ArgumentException($"--pca: sizes must be ascending and distinct ({s.PcaSizes[i - 1]} comes before {p})");
        }
        foreach (int p in s.PcaSizes.Where(p => p > 0))
        {
            if (p > minTrainPart)
                throw new ArgumentException($"--pca {p}: more components than the {minTrainPart} training images of a fold's training part");
            foreach (var l in s.Layers)
                if (p > layerDims[l]) throw new ArgumentException($"--pca {p}: more components than layer {l}'s {layerDims[l]} features");
        }
    }

    /// <summary>Runs the grid. <paramref name="train"/>, <paramref name="test"/>: one FeatureSet per layer, the same rows
    /// in the same order for every layer (L2-normalised as extracted).
    /// Each SVM is LIBLINEAR's dual CD (<see cref="DualPath"/>), over Gram matrices when the features outnumber a
    /// fold's training rows: without PCA, one K = X Xᵀ per layer over all training rows and one test-by-training K;
    /// a fold's problem is K's sub-matrix on its training part, and its held-out rows are scored from K's rows. With
    /// PCA, one PCA per fold on its training part (<see cref="LayerPcas"/>) and the transformed rows (or their Gram
    /// matrices). Each (layer, PCA size, fold) runs its C in ascending order, each solve warm-started from the
    /// previous C's α; these chains run in parallel on MaxThreads cores. The results do not depend on the thread
    /// count; they agree with cold-started solves (scikit-learn's) up to the solver's tolerance. A row's SvmSeconds holds its own fits plus an equal share (1/|C|) of the kernel matrices' and PCA
    /// transforms' time of its (layer, pca); its PcaSeconds sums the PCA fits of its layer's folds and refit (one fit
    /// per fold at the largest size serves every size).</summary>
    public static SweepResult Run(IReadOnlyDictionary<string, FeatureSet> train, IReadOnlyDictionary<string, FeatureSet> test,
        SweepSettings settings, Action<SweepProgress>? progress = null, CancellationToken cancellation = default)
        => RunGrid(train, test, settings, progress, cancellation, new GramFits(warmStart: true));

    /// <summary><see cref="Run"/> with every SVM started from α = 0, as scikit-learn's LinearSVC starts.</summary>
    internal static SweepResult RunCold(IReadOnlyDictionary<string, FeatureSet> train, IReadOnlyDictionary<string, FeatureSet> test,
        SweepSettings settings, Action<SweepProgress>? progress = null, CancellationToken cancellation = default)
        => RunGrid(train, test, settings, progress, cancellation, new GramFits(warmStart: false));

    /// <summary>The same grid with each SVM trained on the rows themselves by <see cref="LinearSvm.TrainOneVsRest"/>,
    /// one fit after another (each on all cores): the plain version the Gram one is checked and timed against.</summary>
    internal static SweepResult RunPrimal(IReadOnlyDictionary<string, FeatureSet> train, IReadOnlyDictionary<string, FeatureSet> test,
        SweepSettings settings, Action<SweepProgress>? progress = null, CancellationToken cancellation = default)
        => RunGrid(train, test, settings, progress, cancellation, new PrimalFits());

    /// <summary>One SVM fit of the grid: layer, PCA size index, fold (Folds = the refit), C index.</summary>
    internal readonly record struct FitKey(int Layer, int Pca, int Fold, int C);

    /// <summary>What a fit gives: accuracy on its held-out rows (the test rows for the refit), training seconds,
    /// binary classifiers stopped at the iteration limit.</summary>
    internal readonly record struct FitOutcome(double Accuracy, double Seconds, int IterationLimitHits);

    /// <summary>The rows and labels a grid works on, shared by both ways of fitting.</summary>
    internal sealed record Grid(SweepSettings Settings, FeatureSet[] Train, FeatureSet[] Test, int[] YTrain, int[] YTest, int[] Fold, int Threads)
    {
        public int[] FitRows(int f) => f < Settings.Folds ? [.. Enumerable.Range(0, YTrain.Length).Where(r => Fold[r] != f)] : [.. Enumerable.Range(0, YTrain.Length)];
        public int[] HeldOutRows(int f) => [.. Enumerable.Range(0, YTrain.Length).Where(r => Fold[r] == f)];
        public SvmOptions Options(int c) => new(C: Settings.Cs[c], Loss: Settings.Loss, Seed: Settings.Seed);
        public string Describe(FitKey key)
        {
            int pca = Settings.PcaSizes[key.Pca];
            return $"{Settings.Layers[key.Layer]}{(pca == 0 ? "" : $" pca {pca}")} C={Num(Settings.Cs[key.C])} " +
                   (key.Fold < Settings.Folds ? $"fold {key.Fold + 1}/{Settings.Folds}" : "refit");
        }
    }

    /// <summary>What a layer's fits share: per PCA size index, the seconds of work shared by its fits (kernel
    /// matrices, transforms); the PCA fit seconds (folds and refit, shared by every size); the refit's PCA.</summary>
    internal sealed record LayerWork(double[] SharedSeconds, double PcaSeconds, SweepLayerPca? Pca);

    /// <summary>A way of running every fit of one layer; <paramref name="done"/> is called once per fit (from any thread).</summary>
    internal interface IFits
    {
        /// <summary>Every fit of the grid; outcomes[layer] is indexed [PCA size index, fold, C index].</summary>
        LayerWork[] Run(Grid grid, FitOutcome[][,,] outcomes, Action<FitKey> done, CancellationToken cancellation);
    }

    /// <summary>
    /// The PCAs of one layer, as a scikit-learn <c>Pipeline(PCA, LinearSVC)</c> inside cross-validation fits them:
    /// for each fold f (f = Folds: the refit) one PCA on its training part only, centred on that part's mean, with
    /// the largest requested size (a smaller size is its first components: <see cref="PcaModel.Truncate"/>).
    /// Z[f] holds every training row transformed by fold f's PCA (N, largest size); ZTest the test rows by the refit's.
    /// </summary>
    internal sealed record LayerPcas(PcaModel[] Models, float[][] Z, float[] ZTest, int Size, double FitSeconds, double TransformSeconds)
    {
        public static LayerPcas? Fit(Grid g, int layer, CancellationToken cancellation)
        {
            var s = g.Settings;
            int size = s.PcaSizes.Max();
            if (size == 0) return null;
            var X = g.Train[layer];
            int k = s.Folds, N = g.YTrain.Length;
            var models = new PcaModel[k + 1];
            var Z = new float[k + 1][];
            // Folds side by side, each PCA on its share of the cores (its eigensolver runs on one).
            int parallel = Math.Min(g.Threads, k + 1), each = Math.Max(1, g.Threads / parallel);
            long t0 = Stopwatch.GetTimestamp();
            Parallel.For(0, k + 1, new ParallelOptions { MaxDegreeOfParallelism = parallel, CancellationToken = cancellation }, f =>
            {
                int[] fit = g.FitRows(f);
                models[f] = PcaModel.Fit(f < k ? Gather(X.X, X.D, fit) : X.X, fit.Length, X.D, size, each, cancellation);
            });
            long t1 = Stopwatch.GetTimestamp();
            Parallel.For(0, k + 1, new ParallelOptions { MaxDegreeOfParallelism = parallel, CancellationToken = cancellation },
                f => Z[f] = models[f].Transform(X.X, N));
            float[] zTest = models[k].Transform(g.Test[layer].X, g.YTest.Length);
            return new LayerPcas(models, Z, zTest, size, models.Sum(m => m.FitSeconds), Stopwatch.GetElapsedTime(t1).TotalSeconds);
        }

        /// <summary>The first <paramref name="p"/> columns of the given rows of (·, Size) row-major Z.</summary>
        public float[] Columns(float[] z, int[] rows, int p)
        {
            var r = new float[(long)rows.Length * p];
            for (int i = 0; i < rows.Length; i++) z.AsSpan(rows[i] * Size, p).CopyTo(r.AsSpan(i * p, p));
            return r;
        }

        public SweepLayerPca Summary(string layer) =>
            new(layer, Models[^1].InputDim, Models[^1].ExplainedVarianceRatio, Models[^1].FitSeconds);
    }

    /// <summary>Each fit gathers its rows (PCA-transformed for a PCA size) and calls LinearSvm.TrainOneVsRest.</summary>
    sealed class PrimalFits : IFits
    {
        public LayerWork[] Run(Grid g, FitOutcome[][,,] outcomes, Action<FitKey> done, CancellationToken cancellation) =>
            [.. Enumerable.Range(0, g.Train.Length).Select(l => RunLayer(g, l, outcomes[l], done, cancellation))];

        static LayerWork RunLayer(Grid g, int layer, FitOutcome[,,] outcomes, Action<FitKey> done, CancellationToken cancellation)
        {
            var s = g.Settings;
            var pcas = LayerPcas.Fit(g, layer, cancellation);
            int k = s.Folds;
            for (int pi = 0; pi < s.PcaSizes.Count; pi++)
                for (int c = 0; c < s.Cs.Count; c++)
                    for (int f = 0; f <= k; f++)
                    {
                        cancellation.ThrowIfCancellationRequested();
                        int p = s.PcaSizes[pi];
                        int[] fit = g.FitRows(f), held = f < k ? g.HeldOutRows(f) : [];
                        int d = p == 0 ? g.Train[layer].D : p;
                        float[] Rows(int[] rows) => p == 0 ? Gather(g.Train[layer].X, d, rows) : pcas!.Columns(pcas.Z[f], rows, p);
                        float[] evalX = f < k ? Rows(held) : p == 0 ? g.Test[layer].X : pcas!.Columns(pcas.ZTest, [.. Enumerable.Range(0, g.YTest.Length)], p);
                        long t0 = Stopwatch.GetTimestamp();
                        var model = LinearSvm.TrainOneVsRest(Rows(fit), fit.Length, d, [.. fit.Select(r => g.YTrain[r])], g.Options(c));
                        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                        int[] truth = f < k ? [.. held.Select(r => g.YTrain[r])] : g.YTest;
                        double accuracy = truth.Length == 0 ? double.NaN : Accuracy(model.PredictBatch(evalX, truth.Length), truth);
                        outcomes[pi, f, c] = new(accuracy, seconds, model.Warnings.Count);
                        done(new(layer, pi, f, c));
                    }
            return new(new double[s.PcaSizes.Count], pcas?.FitSeconds ?? 0, pcas?.Summary(g.Train[layer].Layer));
        }
    }

    /// <summary>Kernel matrices once per (layer, PCA size), layer after layer; then every (layer, PCA size, fold)
    /// in parallel, each single-threaded over its fold's matrix. With <paramref name="warmStart"/> a fold's C run
    /// one after another in ascending order, each solve starting from the previous C's α (<see cref="DualPath"/>);
    /// without, every (layer, PCA size, fold, C) is its own task, largest C first, started from α = 0.</summary>
    sealed class GramFits(bool warmStart) : IFits
    {
        public LayerWork[] Run(Grid g, FitOutcome[][,,] outcomes, Action<FitKey> done, CancellationToken cancellation)
        {
            var s = g.Settings;
            var work = new LayerWork[g.Train.Length];
            var tasks = new List<(FitKey Key, Prepared P)>();
            for (int l = 0; l < g.Train.Length; l++)
            {
                var prepared = Prepare(g, l, cancellation);
                work[l] = prepared.Work;
                for (int pi = 0; pi < s.PcaSizes.Count; pi++)
                    for (int f = 0; f <= s.Folds; f++)
                        if (warmStart) tasks.Add((new(l, pi, f, -1), prepared));
                        else for (int c = 0; c < s.Cs.Count; c++) tasks.Add((new(l, pi, f, c), prepared));
            }
            // Cold fits: iterations (and time) grow with C, so largest C first keeps the last fits short (LPT).
            if (!warmStart) tasks = [.. tasks.OrderByDescending(t => t.Key.C)];
            Parallel.ForEach(tasks, new ParallelOptions { MaxDegreeOfParallelism = g.Threads, CancellationToken = cancellation }, t =>
            {
                var (key, p) = t;
                int f = key.Fold, k = s.Folds;
                int[] fit = p.FitRows[f];
                int[] yFit = [.. fit.Select(r => g.YTrain[r])];
                int rowsDim = p.RowsDim[key.Pca];
                var path = rowsDim > 0 ? DualPath.Rows(p.FitK[key.Pca, f], fit.Length, rowsDim, yFit) : DualPath.Gram(p.FitK[key.Pca, f], fit.Length, yFit);
                int[] truth = f < k ? [.. g.HeldOutRows(f).Select(r => g.YTrain[r])] : g.YTest;
                foreach (int c in key.C >= 0 ? [key.C] : Enumerable.Range(0, s.Cs.Count))
                {
                    cancellation.ThrowIfCancellationRequested();
                    long t1 = Stopwatch.GetTimestamp();
                    var model = path.Train(g.Options(c), warmStart: warmStart && c > 0);
                    double seconds = Stopwatch.GetElapsedTime(t1).TotalSeconds;
                    double accuracy = truth.Length == 0 ? double.NaN : Accuracy(model.Predict(p.EvalK[key.Pca, f], truth.Length), truth);
                    outcomes[key.Layer][key.Pca, f, c] = new(accuracy, seconds, model.IterationLimitHits);
                    done(key with { C = c });
                }
            });
            return work;
        }

        /// <summary>A layer's matrices: per (PCA size index, fold) the Gram matrix of the fold's training part and
        /// the kernel values of its evaluation rows.
        /// RowsDim[pi] > 0: FitK and EvalK hold the rows themselves (n_f, RowsDim) and (h_f, RowsDim).</summary>
        sealed record Prepared(int[][] FitRows, float[,][] FitK, float[,][] EvalK, int[] RowsDim, LayerWork Work);

        static Prepared Prepare(Grid g, int layer, CancellationToken cancellation)
        {
            var s = g.Settings;
            var Xtr = g.Train[layer];
            var Xte = g.Test[layer];
            int N = g.YTrain.Length, M = g.YTest.Length, k = s.Folds, sizes = s.PcaSizes.Count;
            var options = new ParallelOptions { MaxDegreeOfParallelism = g.Threads, CancellationToken = cancellation };
            var fitRows = new int[k + 1][];
            for (int f = 0; f <= k; f++) fitRows[f] = g.FitRows(f);
            // Per (PCA size, fold): the Gram matrix of the fold's training part (n_f, n_f), and the kernel values of
            // its held-out rows (h_f, n_f); for the refit, all training rows (N, N) and the test rows (M, N).
            var fitK = new float[sizes, k + 1][];
            var evalK = new float[sizes, k + 1][];
            var shared = new double[sizes];
            // A step over the Gram matrix costs O(n), over the rows O(D): rows when the features are no more than the
            // smallest training part (fc8's 1000 against ~1200, most PCA sizes).
            int smallest = fitRows.Min(r => r.Length);
            bool[] byRows = [.. s.PcaSizes.Select(p => (p == 0 ? Xtr.D : p) <= smallest)];
            if (s.PcaSizes[0] == 0 && byRows[0])
            {
                long t0 = Stopwatch.GetTimestamp();
                Parallel.For(0, k + 1, options, f =>
                {
                    fitK[0, f] = f < k ? Gather(Xtr.X, Xtr.D, fitRows[f]) : Xtr.X;
                    evalK[0, f] = f < k ? Gather(Xtr.X, Xtr.D, g.HeldOutRows(f)) : Xte.X;
                });
                shared[0] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            else if (s.PcaSizes[0] == 0)
            {
                // One K = X Xᵀ over all training rows serves every fold: a fold's blocks are sub-matrices of it.
                long t0 = Stopwatch.GetTimestamp();
                float[] K = GramSvm.KernelMatrix(Xtr.X, N, Xtr.X, N, Xtr.D);      // (N, N)
                float[] Kte = GramSvm.KernelMatrix(Xte.X, M, Xtr.X, N, Xtr.D);    // (M, N)
                Parallel.For(0, k + 1, options, f =>
                {
                    fitK[0, f] = f < k ? SubMatrix(K, N, fitRows[f], fitRows[f]) : K;
                    evalK[0, f] = f < k ? SubMatrix(K, N, g.HeldOutRows(f), fitRows[f]) : Kte;
                });
                shared[0] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            var pcas = LayerPcas.Fit(g, layer, cancellation);
            if (pcas != null)
            {
                int first = s.PcaSizes[0] == 0 ? 1 : 0;
                for (int pi = first; pi < sizes; pi++)
                {
                    int p = s.PcaSizes[pi];
                    long t0 = Stopwatch.GetTimestamp();
                    for (int f = 0; f <= k; f++)
                    {
                        float[] zFit = pcas.Columns(pcas.Z[f], fitRows[f], p);
                        float[] zEval = f < k ? pcas.Columns(pcas.Z[f], g.HeldOutRows(f), p) : pcas.Columns(pcas.ZTest, [.. Enumerable.Range(0, M)], p);
                        int nEval = f < k ? N - fitRows[f].Length : M;
                        if (byRows[pi]) (fitK[pi, f], evalK[pi, f]) = (zFit, zEval);
                        else
                        {
                            fitK[pi, f] = GramSvm.KernelMatrix(zFit, fitRows[f].Length, zFit, fitRows[f].Length, p);
                            evalK[pi, f] = GramSvm.KernelMatrix(zEval, nEval, zFit, fitRows[f].Length, p);
                        }
                    }
                    shared[pi] = Stopwatch.GetElapsedTime(t0).TotalSeconds + pcas.TransformSeconds / (sizes - first);
                }
            }

            return new(fitRows, fitK, evalK, [.. s.PcaSizes.Select((p, pi) => byRows[pi] ? (p == 0 ? Xtr.D : p) : 0)], new(shared, pcas?.FitSeconds ?? 0, pcas?.Summary(Xtr.Layer)));
        }
    }

    /// <summary>Rows <paramref name="rows"/> and columns <paramref name="cols"/> of the (·, ld) row-major matrix K.</summary>
    internal static float[] SubMatrix(float[] K, int ld, int[] rows, int[] cols)
    {
        var sub = new float[(long)rows.Length * cols.Length];
        for (int r = 0; r < rows.Length; r++)
        {
            long src = (long)rows[r] * ld, dst = (long)r * cols.Length;
            for (int c = 0; c < cols.Length; c++) sub[dst + c] = K[src + cols[c]];
        }
        return sub;
    }

    static SweepResult RunGrid(IReadOnlyDictionary<string, FeatureSet> train, IReadOnlyDictionary<string, FeatureSet> test,
        SweepSettings s, Action<SweepProgress>? progress, CancellationToken cancellation, IFits fits)
    {
        var clock = Stopwatch.StartNew();
        var (classes, yTrain, yTest) = CheckFeatures(train, test, s);
        int k = s.Folds;
        Check(s, s.Layers.ToDictionary(l => l, l => train[l].D), yTrain);
        var g = new Grid(s, [.. s.Layers.Select(l => train[l])], [.. s.Layers.Select(l => test[l])], yTrain, yTest,
            FoldOf(yTrain, k), s.MaxThreads > 0 ? s.MaxThreads : Environment.ProcessorCount);

        int total = s.Layers.Count * s.PcaSizes.Count * s.Cs.Count * (k + 1), done = 0;
        var gate = new object();
        progress?.Invoke(new(0, total, "", 0));
        void Done(FitKey key)
        {
            if (progress == null) return;
            lock (gate) progress(new(++done, total, g.Describe(key), clock.Elapsed.TotalSeconds));
        }

        var rows = new List<SweepRow>();
        var warnings = new List<string>();
        var layerPcas = new List<SweepLayerPca>();
        var allOutcomes = s.Layers.Select(_ => new FitOutcome[s.PcaSizes.Count, k + 1, s.Cs.Count]).ToArray();
        var works = fits.Run(g, allOutcomes, Done, cancellation);
        for (int l = 0; l < s.Layers.Count; l++)
        {
            var outcomes = allOutcomes[l];
            var work = works[l];
            if (work.Pca != null) layerPcas.Add(work.Pca);
            for (int p = 0; p < s.PcaSizes.Count; p++)
            {
                int pca = s.PcaSizes[p];
                var layerRows = new List<SweepRow>();
                for (int c = 0; c < s.Cs.Count; c++)
                {
                    var accuracies = new double[k];
                    double seconds = work.SharedSeconds[p] / s.Cs.Count;
                    int hits = 0;
                    for (int f = 0; f <= k; f++)
                    {
                        if (f < k) accuracies[f] = outcomes[p, f, c].Accuracy;
                        seconds += outcomes[p, f, c].Seconds;
                        hits += outcomes[p, f, c].IterationLimitHits;
                    }
                    var (mean, std) = MeanStd(accuracies);
                    layerRows.Add(new SweepRow(s.Layers[l], pca, s.Cs[c], pca == 0 ? g.Train[l].D : pca, mean, std, accuracies, false,
                        outcomes[p, k, c].Accuracy, seconds, pca == 0 ? 0 : work.PcaSeconds, hits));
                    if (hits > 0)
                        warnings.Add($"{s.Layers[l]}{(pca == 0 ? "" : $" pca {pca}")} C={Num(s.Cs[c])}: {hits} binary classifiers " +
                                     "stopped at the iteration limit (1000) before the tolerance 1e-4");
                }
                rows.AddRange(MarkSelected(layerRows));
            }
        }
        return new SweepResult(s, classes, yTrain.Length, yTest.Length, rows, layerPcas, clock.Elapsed.TotalSeconds, g.Threads, warnings);
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
