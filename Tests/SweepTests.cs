using Tp7.Engine.Data;
using Tp7.Engine.Features;
using Tp7.Engine.Studies;
using Tp7.Engine.Svm;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>Sweep's rules (folds, checks, selection) and its Gram-matrix SVM against the row-wise one.</summary>
public sealed class SweepTests(ITestOutputHelper log)
{
    [Fact]
    public void FoldOfSendsTheIthRowOfEachClassToFoldIModK()
    {
        int[] labels = [2, 0, 2, 2, 1, 0, 2, 0, 1, 0, 2];
        // class 2 rows: 0, 2, 3, 6, 10 -> folds 0, 1, 2, 0, 1; class 0 rows: 1, 5, 7, 9 -> 0, 1, 2, 0; class 1: 4, 8 -> 0, 1
        Assert.Equal([0, 0, 1, 2, 0, 1, 0, 2, 1, 0, 1], Sweep.FoldOf(labels, 3));
        Assert.Equal([0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0], Sweep.FoldOf(labels, 2));
    }

    [Theory]
    [InlineData("folds1", "--folds must be at least 2, got 1")]
    [InlineData("fewPerClass", "--folds 5: class 1 has only 4 training images; every class needs at least 5")]
    [InlineData("noC", "--C: give at least one value")]
    [InlineData("negativeC", "--C: -1 is not a positive number")]
    [InlineData("descendingC", "--C: values must be ascending and distinct (1 comes before 0.1)")]
    [InlineData("noLayer", "--layers: give at least one layer")]
    [InlineData("unknownLayer", "--layers: no dimension known for layer fc9")]
    [InlineData("twiceLayer", "--layers: fc7 is given twice")]
    [InlineData("pcaNoneLast", "--pca: none (0) must come first, then the sizes in ascending order")]
    [InlineData("pcaNoneTwice", "--pca: no PCA is asked for twice ('none' and 0 both mean it)")]
    [InlineData("pcaDescending", "--pca: sizes must be ascending and distinct (8 comes before 4)")]
    [InlineData("pcaTooBigForFold", "--pca 20: more components than the 18 training images of a fold's training part")]
    [InlineData("pcaTooBigForLayer", "--pca 17: more components than layer fc8's 16 features")]
    public void CheckSpeaksTheCliWords(string case_, string message)
    {
        // 3 classes: 8, 4 and 12 training images.
        int[] labels = [.. Enumerable.Repeat(0, 8), .. Enumerable.Repeat(1, 4), .. Enumerable.Repeat(2, 12)];
        var dims = new Dictionary<string, int> { ["fc7"] = 4096, ["fc8"] = 16 };
        var ok = new SweepSettings(["fc7", "fc8"], [0.1, 1], 4, [0]);
        var s = case_ switch
        {
            "folds1" => ok with { Folds = 1 },
            "fewPerClass" => ok with { Folds = 5 },
            "noC" => ok with { Cs = [] },
            "negativeC" => ok with { Cs = [-1] },
            "descendingC" => ok with { Cs = [1, 0.1] },
            "noLayer" => ok with { Layers = [] },
            "unknownLayer" => ok with { Layers = ["fc7", "fc9"] },
            "twiceLayer" => ok with { Layers = ["fc7", "fc7"] },
            "pcaNoneLast" => ok with { PcaSizes = [4, 0] },
            "pcaNoneTwice" => ok with { PcaSizes = [0, 0, 4] },
            "pcaDescending" => ok with { PcaSizes = [0, 8, 4] },
            // folds of 4: each holds 2 + 1 + 3 = 6 rows, so a training part has 18
            "pcaTooBigForFold" => ok with { Layers = ["fc7"], PcaSizes = [0, 20] },
            "pcaTooBigForLayer" => ok with { PcaSizes = [17] },
            _ => throw new ArgumentException(case_),
        };
        Sweep.Check(ok, dims, labels);
        var e = Assert.Throws<ArgumentException>(() => Sweep.Check(s, dims, labels));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void TiesGoToTheSmallestC()
    {
        SweepRow Row(double c, double mean) => new("fc7", 0, c, 8, mean, 0, [mean], false, 0, 0, 0, 0);
        var rows = Sweep.MarkSelected([Row(0.01, 0.5), Row(0.1, 0.75), Row(1, 0.75), Row(10, 0.7)]).ToList();
        Assert.Equal([false, true, false, false], rows.Select(r => r.Selected));
        rows = Sweep.MarkSelected([Row(0.01, 0.8), Row(0.1, 0.8)]).ToList();
        Assert.Equal([true, false], rows.Select(r => r.Selected));
    }

    [Fact]
    public void MeanAndStdAreNumpys()
    {
        var (mean, std) = Sweep.MeanStd([0.5, 0.75, 1.0, 0.75]);
        Assert.Equal(0.75, mean, 15);
        Assert.Equal(Math.Sqrt((0.0625 + 0 + 0.0625 + 0) / 4), std, 15);   // ddof = 0
    }

    /// <summary>The Gram solver runs LinearSvm's dual CD with the same permutation sequence, so on the same problem
    /// it must land on the same classifier: coefficients (its w = Σ α_i y_i x_i) within 1e-4 of the largest weight
    /// and the same predictions. D > n, n > D, two and several classes, both losses, a C that shrinks hard.</summary>
    [Theory]
    [InlineData(120, 300, 4, 1.0, SvmLoss.SquaredHinge)]
    [InlineData(200, 40, 5, 0.1, SvmLoss.SquaredHinge)]
    [InlineData(90, 500, 2, 10.0, SvmLoss.SquaredHinge)]
    [InlineData(150, 200, 3, 1.0, SvmLoss.Hinge)]
    [InlineData(80, 64, 6, 0.01, SvmLoss.Hinge)]
    public void GramSolverMatchesThePrimalSolver(int n, int d, int classes, double C, SvmLoss loss)
    {
        var (X, y) = Features(n, d, classes, noise: 1.5, seed: n + d);
        var o = new SvmOptions(C: C, Loss: loss, Seed: 3);
        var primal = LinearSvm.TrainOneVsRest(X, n, d, y, o);
        var gram = GramSvm.TrainOneVsRest(GramSvm.KernelMatrix(X, n, X, n, d), n, y, o);

        Assert.Equal(primal.Classes, gram.Classes);
        double[] w = gram.PrimalWeights(X, d);
        double worst = 0, scale = 0;
        for (int c = 0; c < primal.NumClassifiers; c++)
        {
            for (int j = 0; j < d; j++)
            {
                worst = Math.Max(worst, Math.Abs(w[c * d + j] - primal.W[c * d + j]));
                scale = Math.Max(scale, Math.Abs(primal.W[c * d + j]));
            }
            worst = Math.Max(worst, Math.Abs(gram.Bias[c] - primal.Bias[c]));
        }
        log.WriteLine($"n={n} d={d} classes={classes} C={C} {loss}: max |Δw| {worst:E2}, max |w| {scale:F3}, " +
                      $"iterations primal [{string.Join(' ', primal.Iterations)}] gram [{string.Join(' ', gram.Iterations)}]");
        Assert.True(worst <= 1e-4 * scale, $"coefficients differ by {worst:E3} (max |w| {scale:E3})");
        Assert.Equal(primal.Iterations, gram.Iterations);

        var (Xt, _) = Features(60, d, classes, noise: 1.5, seed: n + d + 1);
        Assert.Equal(primal.PredictBatch(Xt, 60), gram.Predict(GramSvm.KernelMatrix(Xt, 60, X, n, d), 60));
    }

    /// <summary>The Gram matrix of rows with themselves (the symmetric block path) equals the general A Bᵀ product:
    /// exactly symmetric, and within float rounding of it (sizes across several row blocks, not multiples of one).</summary>
    [Theory]
    [InlineData(7, 33)]
    [InlineData(450, 97)]
    public void GramMatrixEqualsTheGeneralProduct(int n, int d)
    {
        var (X, _) = Features(n, d, 3, noise: 1, seed: n);
        float[] K = GramSvm.KernelMatrix(X, n, X, n, d), G = GramSvm.KernelMatrix(X, n, (float[])X.Clone(), n, d);
        double worst = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                Assert.Equal(K[i * n + j], K[j * n + i]);
                worst = Math.Max(worst, Math.Abs(K[i * n + j] - G[i * n + j]));
            }
        Assert.True(worst <= 1e-5, $"Gram matrix differs from the general product by {worst:E2}");
        Assert.Equal(1.0, K[0], 5);   // rows have norm 1
    }

    /// <summary>The parallel Gram grid, cold-started, gives the plain grid's numbers (one TrainOneVsRest per fold and
    /// C): the same fold accuracies, test accuracies and selections.</summary>
    [Fact]
    public void GramGridEqualsThePlainGrid()
    {
        var (train, test) = Layers(nTrain: 150, nTest: 60, classes: 5, ("fc7", 200), ("fc8", 30));
        var s = new SweepSettings(["fc7", "fc8"], [0.01, 0.1, 1, 10], 5, [0, 5, 12], Seed: 1, MaxThreads: 2);
        var progress = new List<SweepProgress>();
        var fast = Sweep.RunCold(train, test, s, p => progress.Add(p));
        var plain = Sweep.RunPrimal(train, test, s);

        Assert.Equal(2 * 3 * 4, fast.Rows.Count);
        Assert.Equal(2 * 3 * 4 * 6, progress[^1].Done);
        Assert.Equal(progress[^1].Total, progress[^1].Done);
        for (int r = 0; r < fast.Rows.Count; r++)
        {
            var (a, b) = (fast.Rows[r], plain.Rows[r]);
            log.WriteLine($"{a.Layer} pca {a.Pca} C={a.C}: cv {a.CvMean:F4}±{a.CvStd:F4} (plain {b.CvMean:F4}) test {a.TestAccuracy:F4} (plain {b.TestAccuracy:F4}) " +
                          $"selected {a.Selected}/{b.Selected} svm {a.SvmSeconds:F3} s / {b.SvmSeconds:F3} s");
            Assert.Equal((b.Layer, b.C, b.Dim, b.Pca), (a.Layer, a.C, a.Dim, a.Pca));
            Assert.Equal(b.FoldAccuracies, a.FoldAccuracies);
            Assert.Equal(b.TestAccuracy, a.TestAccuracy);
            Assert.Equal(b.Selected, a.Selected);
            Assert.Equal(b.IterationLimitHits, a.IterationLimitHits);
        }
        // the grid is not degenerate: accuracies vary with C
        Assert.True(fast.Rows.Select(r => r.CvMean).Distinct().Count() > 2);
        // one selected C per (layer, pca); PCA rows see the PCA size and carry its fit time
        Assert.Equal(6, fast.Rows.Count(r => r.Selected));
        Assert.All(fast.Rows, r => Assert.Equal(r.Pca == 0 ? (r.Layer == "fc7" ? 200 : 30) : r.Pca, r.Dim));
        Assert.All(fast.Rows, r => Assert.True(r.Pca == 0 ? r.PcaSeconds == 0 : r.PcaSeconds > 0));
        Assert.Equal(["fc7", "fc8"], fast.Pca.Select(p => p.Layer));
        Assert.All(fast.Pca, p => Assert.Equal(12, p.ExplainedVarianceRatio.Length));
        Assert.Equal(fast.Pca.Select(p => p.ExplainedVarianceRatio), plain.Pca.Select(p => p.ExplainedVarianceRatio));
        Assert.Equal(150, fast.TrainCount);
        Assert.Equal(60, fast.TestCount);
    }

    /// <summary>Warm start along the ascending C path (Run's default) converges to the same tolerance as a cold start,
    /// so its classifiers agree with the cold ones up to that tolerance: coefficients within 1e-3 of the largest
    /// weight, predictions on held-out rows nearly all equal; and it needs fewer passes in total.</summary>
    [Fact]
    public void WarmStartAlongCAgreesWithColdStart()
    {
        int n = 240, d = 300;
        var (X, y) = Features(n, d, 4, noise: 0.4 * Math.Sqrt(d), seed: 7);
        var (Xt, _) = Features(120, d, 4, noise: 0.4 * Math.Sqrt(d), seed: 8);
        float[] K = GramSvm.KernelMatrix(X, n, X, n, d), Kt = GramSvm.KernelMatrix(Xt, 120, X, n, d);
        var path = DualPath.Gram(K, n, y);
        int warmPasses = 0, coldPasses = 0, differ = 0;
        foreach (var loss in new[] { SvmLoss.SquaredHinge, SvmLoss.Hinge })
        {
            path = DualPath.Gram(K, n, y);
            foreach (double C in new[] { 0.01, 0.1, 1, 10, 100 })
            {
                var o = new SvmOptions(C: C, Loss: loss);
                var warm = path.Train(o, warmStart: C > 0.01);
                var cold = GramSvm.TrainOneVsRest(K, n, y, o);
                double[] ww = ((GramModel)warm).PrimalWeights(X, d), wc = cold.PrimalWeights(X, d);
                double worst = ww.Zip(wc).Max(z => Math.Abs(z.First - z.Second)), scale = wc.Max(Math.Abs);
                int diff = warm.Predict(Kt, 120).Zip(cold.Predict(Kt, 120)).Count(z => z.First != z.Second);
                log.WriteLine($"{loss} C={C}: passes warm [{string.Join(' ', warm.Iterations)}] cold [{string.Join(' ', cold.Iterations)}]; " +
                              $"max |Δw| {worst:E2} of max |w| {scale:F3}; {diff}/120 predictions differ");
                Assert.True(worst <= 1e-3 * scale, $"{loss} C={C}: warm and cold weights differ by {worst:E2} (max |w| {scale:E2})");
                warmPasses += warm.Iterations.Sum();
                coldPasses += cold.Iterations.Sum();
                differ += diff;
            }
        }
        Assert.True(differ <= 2, $"{differ} predictions differ between warm and cold starts");
        Assert.True(warmPasses < coldPasses, $"warm start took {warmPasses} passes, cold {coldPasses}");
    }

    /// <summary>Inside cross-validation each fold's PCA is fitted on that fold's training part only (scikit-learn's
    /// Pipeline(PCA, LinearSVC) under cross_val_score): the sweep's fold accuracies are those of a PCA fitted on the
    /// training part, and not those of one fitted on all training rows (which sees the held-out rows).</summary>
    [Fact]
    public void PcaIsFittedOnEachFoldsTrainingPartOnly()
    {
        const int k = 3, p = 3;
        var (train, test) = Layers(nTrain: 45, nTest: 15, classes: 3, ("fc8", 24));
        var s = new SweepSettings(["fc8"], [1], k, [p], MaxThreads: 2);
        var row = Assert.Single(Sweep.Run(train, test, s).Rows);
        var X = train["fc8"];
        int[] fold = Sweep.FoldOf(X.Labels, k);

        double FoldAccuracy(int f, bool leak)
        {
            int[] fit = [.. Enumerable.Range(0, X.N).Where(r => fold[r] != f)], held = [.. Enumerable.Range(0, X.N).Where(r => fold[r] == f)];
            var pca = leak ? Engine.Analysis.PcaModel.Fit(X.X, X.N, X.D, p) : Engine.Analysis.PcaModel.Fit(Sweep.Gather(X.X, X.D, fit), fit.Length, X.D, p);
            var model = LinearSvm.TrainOneVsRest(pca.Transform(Sweep.Gather(X.X, X.D, fit), fit.Length), fit.Length, p, [.. fit.Select(r => X.Labels[r])]);
            var pred = model.PredictBatch(pca.Transform(Sweep.Gather(X.X, X.D, held), held.Length), held.Length);
            return held.Where((r, i) => pred[i] == X.Labels[r]).Count() / (double)held.Length;
        }
        double[] inside = [.. Enumerable.Range(0, k).Select(f => FoldAccuracy(f, leak: false))];
        double[] leaky = [.. Enumerable.Range(0, k).Select(f => FoldAccuracy(f, leak: true))];
        log.WriteLine($"sweep [{string.Join(' ', row.FoldAccuracies)}], PCA on the training part [{string.Join(' ', inside)}], on all rows [{string.Join(' ', leaky)}]");
        Assert.Equal(inside, row.FoldAccuracies);
        Assert.NotEqual(leaky, row.FoldAccuracies);
    }

    /// <summary>Rows near class means in d dimensions plus noise, L2-normalised as the extractor leaves them.</summary>
    internal static (float[] X, int[] y) Features(int n, int d, int classes, double noise, int seed)
    {
        var rng = new Random(seed);
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        var mu = new double[classes * d];
        var muRng = new Random(12345);
        for (int i = 0; i < mu.Length; i++) mu[i] = Math.Sqrt(-2 * Math.Log(1 - muRng.NextDouble())) * Math.Cos(2 * Math.PI * muRng.NextDouble());
        var X = new float[n * d];
        var y = new int[n];
        for (int i = 0; i < n; i++)
        {
            y[i] = i % classes;
            for (int j = 0; j < d; j++) X[i * d + j] = (float)(mu[y[i] * d + j] + noise * Gauss());
            FeatureExtractor.Normalize(X.AsSpan(i * d, d));
        }
        return (X, y);
    }

    internal static (Dictionary<string, FeatureSet> Train, Dictionary<string, FeatureSet> Test) Layers(
        int nTrain, int nTest, int classes, params (string Name, int D)[] layers)
    {
        var train = new Dictionary<string, FeatureSet>();
        var test = new Dictionary<string, FeatureSet>();
        string[] names = [.. Enumerable.Range(0, classes).Select(c => $"class{c}")];
        FeatureSet Set(string layer, float[] X, int[] y, int d, string prefix) =>
            new(X, y.Length, d, [.. y.Select((_, i) => $"{prefix}/{i}.png")], y, names, layer, true, "sha", [],
                new ExtractionStats(y.Length, 0, y.Length, 0, 0, 0, 0, 0));
        foreach (var (name, d) in layers)
        {
            // one draw of n + m rows, so train and test come from the same distribution
            var (X, y) = Features(nTrain + nTest, d, classes, noise: 0.4 * Math.Sqrt(d), seed: d);
            train[name] = Set(name, X[..(nTrain * d)], y[..nTrain], d, "train");
            test[name] = Set(name, X[(nTrain * d)..], y[nTrain..], d, "test");
        }
        return (train, test);
    }
}
