using System.Diagnostics;
using Tp7.Engine.IO;
using Tp7.Engine.Svm;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// Runs the reference tools the parity tests need: /usr/bin/python3 (numpy, scikit-learn 1.2.1) and
/// liblinear-train / liblinear-predict. A missing tool fails the test with the install hint, never skips it.
/// </summary>
internal static class ReferenceTools
{
    public const string Python = "/usr/bin/python3";

    public static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Tp7.Native.sln"))) return dir.FullName;
            throw new InvalidOperationException($"Tp7.Native.sln not found above {AppContext.BaseDirectory}");
        }
    }

    public static string RunPython(string script, params string[] args)
    {
        RequirePython();
        return LibLinearInterop.RunTool(Python, ["-c", Dedent(script), .. args]);
    }

    public static string RunPythonFile(string relativeScript, params string[] args)
    {
        RequirePython();
        string path = Path.Combine(RepoRoot, relativeScript);
        Assert.True(File.Exists(path), $"{path}: reference script missing");
        return LibLinearInterop.RunTool(Python, [path, .. args]);
    }

    public static string RunLibLinear(string tool, params string[] args)
    {
        string? found = Environment.GetEnvironmentVariable("PATH")?.Split(':')
            .Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);
        Assert.True(found is not null, $"{tool} not found on PATH: the SVM parity tests need LIBLINEAR's tools " +
                                       "(apt-get install liblinear-tools); CI installs them");
        return LibLinearInterop.RunTool(found!, args);
    }

    private static void RequirePython() =>
        Assert.True(File.Exists(Python), $"{Python} not found: the reference tests need python3 with numpy and " +
                                         "scikit-learn 1.2.1 (apt-get install python3-sklearn); CI installs them");

    // Scripts are written indented inside C# raw strings; Python needs them flush left.
    private static string Dedent(string s)
    {
        var lines = s.Replace("\r", "").Split('\n');
        int indent = lines.Where(l => l.Trim().Length > 0).Select(l => l.Length - l.TrimStart().Length).DefaultIfEmpty(0).Min();
        return string.Join('\n', lines.Select(l => l.Length >= indent ? l[indent..] : l.TrimStart()));
    }
}

/// <summary>Seeded synthetic classification problems: partly overlapping Gaussian clusters, L2-normalised rows.</summary>
internal static class SvmData
{
    public static (float[] X, int[] y) Blobs(int n, int d, int[] labels, int seed, double noise)
    {
        var rng = new Random(seed);
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        int c = labels.Length;
        var means = new double[c, d];
        for (int k = 0; k < c; k++)
            for (int j = 0; j < d; j++) means[k, j] = Gauss() / Math.Sqrt(d);
        var X = new float[n * d];
        var y = new int[n];
        var row = new double[d];
        for (int i = 0; i < n; i++)
        {
            int k = rng.Next(c);   // random order, so liblinear's first-appearance label order is not the sorted one
            y[i] = labels[k];
            double norm = 0;
            for (int j = 0; j < d; j++) { row[j] = means[k, j] + noise * Gauss() / Math.Sqrt(d); norm += row[j] * row[j]; }
            norm = Math.Sqrt(norm);
            for (int j = 0; j < d; j++) X[i * d + j] = (float)(row[j] / norm);
        }
        return (X, y);
    }
}

public sealed class SvmParityTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tp7-svm-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // Measure: for each classifier, max over the D weights and the intercept of |ours − ref|, divided by the
    // largest |ref| among them (so 1e-3 means every coefficient is within 0.1% of that classifier's scale).
    private const double CoefRelTol = 1e-3;

    internal static double MaxRelativeCoefDiff(double[] wA, double[] bA, double[] wB, double[] bB, int m, int d, out int worstClassifier)
    {
        double worst = 0;
        worstClassifier = -1;
        for (int k = 0; k < m; k++)
        {
            double scale = Math.Abs(bB[k]), diff = Math.Abs(bA[k] - bB[k]);
            for (int j = 0; j < d; j++)
            {
                scale = Math.Max(scale, Math.Abs(wB[k * d + j]));
                diff = Math.Max(diff, Math.Abs(wA[k * d + j] - wB[k * d + j]));
            }
            double rel = diff / scale;
            if (rel > worst) { worst = rel; worstClassifier = k; }
        }
        return worst;
    }

    public static TheoryData<string, double, int, int> Cases => new()
    {
        // loss, C, number of classes, D
        { "squared_hinge", 1.0, 5, 96 },
        { "squared_hinge", 0.1, 5, 96 },
        { "squared_hinge", 10.0, 5, 160 },
        { "hinge", 1.0, 5, 96 },
        { "hinge", 0.1, 5, 160 },
        { "squared_hinge", 1.0, 2, 64 },   // binary: one classifier, positive = larger label
        { "hinge", 1.0, 2, 64 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesScikitLearnAndLibLinear(string loss, double C, int numClasses, int d)
    {
        const int n = 300;
        int[] labels = [.. new[] { 2, 5, 7, 11, 13 }.Take(numClasses)];
        // 300 training rows and 300 held-out rows from the same clusters: in 64-160 dimensions the training set is
        // (nearly) separable, so prediction parity on the held-out rows, where classes overlap, is the sharper test.
        var (all, yAll) = SvmData.Blobs(2 * n, d, labels, seed: 1234 + d, noise: d >= 160 ? 4.5 : 3.0);
        float[] X = all[..(n * d)], XTest = all[(n * d)..];
        int[] y = yAll[..n], yTest = yAll[n..];
        var options = new SvmOptions(C: C, Loss: loss == "hinge" ? SvmLoss.Hinge : SvmLoss.SquaredHinge, Tolerance: 1e-4, MaxIterations: 1000);

        // --- ours
        var model = LinearSvm.TrainOneVsRest(X, n, d, y, options);
        var oursPred = model.PredictBatch(X, n);
        var oursTest = model.PredictBatch(XTest, n);
        int m = model.NumClassifiers;
        Assert.Equal(numClasses == 2 ? 1 : numClasses, m);
        Assert.Empty(model.Warnings);

        // --- scikit-learn LinearSVC
        string xPath = Path.Combine(_dir, "X.npy"), yPath = Path.Combine(_dir, "y.npy"), xtPath = Path.Combine(_dir, "Xt.npy");
        string skDir = Path.Combine(_dir, "sk");
        Npy.Write(xPath, X, n, d);
        Npy.Write(xtPath, XTest, n, d);
        Npy.Write(yPath, y.Select(v => (long)v).ToArray());
        ReferenceTools.RunPythonFile("tools/svm_reference.py", xPath, yPath, skDir, "--x-test", xtPath, "--C", C.ToString("R"),
                                     "--loss", loss, "--tol", "1e-4", "--max-iter", "1000", "--intercept-scaling", "1");
        var (skCoef, skShape) = Npy.ReadFloat64(Path.Combine(skDir, "coef.npy"));
        var skBias = Npy.ReadFloat64(Path.Combine(skDir, "intercept.npy")).Data;
        var skPred = Npy.ReadInt32(Path.Combine(skDir, "pred.npy")).Data;
        var skTest = Npy.ReadInt32(Path.Combine(skDir, "pred_test.npy")).Data;
        Assert.Equal(labels.Order().ToArray(), Npy.ReadInt32(Path.Combine(skDir, "classes.npy")).Data);
        Assert.Equal([(long)m, d], skShape);
        Assert.Contains("converged True", File.ReadAllText(Path.Combine(skDir, "versions.txt")));

        // --- liblinear command line on the same values
        string prob = Path.Combine(_dir, "train.txt"), test = Path.Combine(_dir, "test.txt"), modelPath = Path.Combine(_dir, "model.txt");
        string predPath = Path.Combine(_dir, "pred.txt"), testPredPath = Path.Combine(_dir, "pred_test.txt");
        LibLinearInterop.WriteProblem(prob, X, n, d, y);
        LibLinearInterop.WriteProblem(test, XTest, n, d, yTest);
        ReferenceTools.RunLibLinear("liblinear-train", LibLinearInterop.TrainArgs(options, prob, modelPath));
        ReferenceTools.RunLibLinear("liblinear-predict", "-q", prob, modelPath, predPath);
        ReferenceTools.RunLibLinear("liblinear-predict", "-q", test, modelPath, testPredPath);
        var ll = LibLinearInterop.ReadModel(modelPath, d);
        var llPred = LibLinearInterop.ReadPredictions(predPath);
        var llTest = LibLinearInterop.ReadPredictions(testPredPath);
        Assert.Equal(d, ll.NumFeatures);

        double relSk = MaxRelativeCoefDiff(model.W, model.Bias, skCoef, skBias, m, d, out int kSk);
        double relLl = MaxRelativeCoefDiff(model.W, model.Bias, ll.SortedW, ll.SortedBias, m, d, out int kLl);
        double relRefs = MaxRelativeCoefDiff(skCoef, skBias, ll.SortedW, ll.SortedBias, m, d, out _);
        static int Agree(int[] a, int[] b) => a.Zip(b).Count(p => p.First == p.Second);
        double trainAcc = Agree(oursPred, y) / (double)n, testAcc = Agree(oursTest, yTest) / (double)n;
        output.WriteLine($"{loss} C={C} classes={numClasses} D={d}: iterations ours [{string.Join(",", model.Iterations)}]; " +
                         $"max rel coef diff vs sklearn {relSk:E2} (classifier {kSk}), vs liblinear {relLl:E2} (classifier {kLl}), " +
                         $"sklearn vs liblinear {relRefs:E2}; predictions equal train {Agree(oursPred, skPred)}/{n} sklearn, " +
                         $"{Agree(oursPred, llPred)}/{n} liblinear; held-out {Agree(oursTest, skTest)}/{n} sklearn, " +
                         $"{Agree(oursTest, llTest)}/{n} liblinear; accuracy train {trainAcc:F3}, held-out {testAcc:F3}");

        Assert.True(relRefs <= CoefRelTol, $"the two references disagree ({relRefs:E2}); the problem is ill-conditioned for this test");
        Assert.True(relSk <= CoefRelTol, $"coefficients vs sklearn: max relative difference {relSk:E2} > {CoefRelTol} (classifier {kSk})");
        Assert.True(relLl <= CoefRelTol, $"coefficients vs liblinear: max relative difference {relLl:E2} > {CoefRelTol} (classifier {kLl})");
        Assert.Equal(skPred, oursPred);
        Assert.Equal(llPred, oursPred);
        Assert.Equal(skTest, oursTest);
        Assert.Equal(llTest, oursTest);
        // Held-out classes overlap (neither trivial nor hopeless), so equal predictions say something.
        Assert.InRange(testAcc, 1.5 / numClasses, 0.97);
    }

    [Fact]
    public void CoefficientMeasureDetectsAWrongC()
    {
        // Negative control: the 1e-3 measure must see the difference between C = 1 and C = 1.1.
        const int n = 300, d = 96;
        var (X, y) = SvmData.Blobs(n, d, [2, 5, 7, 11, 13], seed: 1234 + d, noise: 3.0);
        var a = LinearSvm.TrainOneVsRest(X, n, d, y, new SvmOptions(C: 1));
        var b = LinearSvm.TrainOneVsRest(X, n, d, y, new SvmOptions(C: 1.1));
        double rel = MaxRelativeCoefDiff(b.W, b.Bias, a.W, a.Bias, a.NumClassifiers, d, out _);
        output.WriteLine($"C=1 vs C=1.1: {rel:E2}");
        Assert.True(rel > 10 * CoefRelTol, $"C=1 vs C=1.1 differ by only {rel:E2}");
    }
}

public sealed class SvmSolverTests
{
    private static (float[] X, int[] y) Data5 => SvmData.Blobs(200, 48, [0, 1, 2, 3, 4], seed: 7, noise: 1.0);

    [Fact]
    public void SameSeedSameModelDifferentSeedSameOptimum()
    {
        var (X, y) = Data5;
        var a = LinearSvm.TrainOneVsRest(X, 200, 48, y, new SvmOptions(Seed: 3));
        var b = LinearSvm.TrainOneVsRest(X, 200, 48, y, new SvmOptions(Seed: 3));
        var c = LinearSvm.TrainOneVsRest(X, 200, 48, y, new SvmOptions(Seed: 4));
        Assert.Equal(a.W, b.W);   // bitwise: parallel classes do not share state
        Assert.Equal(a.Bias, b.Bias);
        Assert.Equal(a.Iterations, b.Iterations);
        Assert.NotEqual(a.W, c.W);   // another visiting order ...
        double rel = SvmParityTests.MaxRelativeCoefDiff(c.W, c.Bias, a.W, a.Bias, 5, 48, out _);
        Assert.True(rel < 1e-3, $"... reaches the same optimum: {rel:E2}");
    }

    [Fact]
    public void IterationLimitIsReportedNotPrinted()
    {
        var (X, y) = Data5;
        var writer = new StringWriter();
        var old = Console.Out;
        Console.SetOut(writer);
        LinearSvmModel m;
        try { m = LinearSvm.TrainOneVsRest(X, 200, 48, y, new SvmOptions(C: 100, Loss: SvmLoss.Hinge, MaxIterations: 2)); }
        finally { Console.SetOut(old); }
        Assert.Equal(string.Empty, writer.ToString());
        Assert.All(m.Iterations, it => Assert.Equal(2, it));
        Assert.Equal(5, m.Warnings.Count);
        Assert.Contains("iteration limit (2)", m.Warnings[0]);
        var full = LinearSvm.TrainOneVsRest(X, 200, 48, y, new SvmOptions(C: 1));
        Assert.Empty(full.Warnings);
        Assert.All(full.Iterations, it => Assert.InRange(it, 3, 999));

        var bin = LinearSvm.SolveBinary(X, 200, 48, y.Select(v => v == 0 ? (sbyte)1 : (sbyte)-1).ToArray(), new SvmOptions(MaxIterations: 1));
        Assert.True(bin.HitIterationLimit);
        Assert.Equal(1, bin.Iterations);
    }

    // Rows (2, ±1) labelled +1 and (0, ±1) labelled −1, bias feature 1 (regularised).
    private static readonly float[] Toy = [2, 1, 2, -1, 0, 1, 0, -1];
    private static readonly sbyte[] ToyY = [1, 1, -1, -1];

    [Fact]
    public void HingeToyHasTheHardMarginAnswer()
    {
        // Hinge with C >= 1.5 is the hard-margin SVM: min ½(a² + c² + b²) s.t. 2a + b >= 1, −b >= 1 (c = 0 by
        // symmetry) → a = 1, b = −1 (multipliers 0.25 each on the positives, 0.75 on the negatives, below C).
        var r = LinearSvm.SolveBinary(Toy, 4, 2, ToyY, new SvmOptions(C: 10, Loss: SvmLoss.Hinge, Tolerance: 1e-8));
        Assert.Equal(1.0, r.Weights[0], 6);
        Assert.Equal(0.0, r.Weights[1], 6);
        Assert.Equal(-1.0, r.Bias, 6);
        Assert.False(r.HitIterationLimit);
        // BiasScale 2 scales the bias feature: now min ½(a² + β²) s.t. 2a + 2β >= 1, −2β >= 1 → β = −½, a = 1,
        // intercept = 2β = −1, the same separating line with a cheaper bias weight.
        var r2 = LinearSvm.SolveBinary(Toy, 4, 2, ToyY, new SvmOptions(C: 10, Loss: SvmLoss.Hinge, Tolerance: 1e-8, BiasScale: 2));
        Assert.Equal(1.0, r2.Weights[0], 6);
        Assert.Equal(-1.0, r2.Bias, 6);
    }

    [Fact]
    public void SquaredHingeToyHasTheDerivedAnswer()
    {
        // min ½(a² + b²) + C[2(1 − 2a − b)² + 2(1 + b)²] with C = 1 (both margins violated):
        // ∂a: a = 8(1 − 2a − b); ∂b: b = 4(1 − 2a − b) − 4(1 + b) → 17a + 8b = 8, 8a + 9b = 0 → a = 72/89, b = −64/89.
        var r = LinearSvm.SolveBinary(Toy, 4, 2, ToyY, new SvmOptions(C: 1, Tolerance: 1e-9));
        Assert.Equal(72.0 / 89, r.Weights[0], 6);
        Assert.Equal(0.0, r.Weights[1], 6);
        Assert.Equal(-64.0 / 89, r.Bias, 6);
        // Without the bias feature: min ½a² + C[2(1 − 2a)² + 2] → a = 8C/(1 + 16C) = 8/17.
        var nb = LinearSvm.SolveBinary(Toy, 4, 2, ToyY, new SvmOptions(C: 1, Tolerance: 1e-9, BiasScale: 0));
        Assert.Equal(8.0 / 17, nb.Weights[0], 6);
        Assert.Equal(0.0, nb.Bias);
    }

    [Fact]
    public void PredictionUsesArgmaxWithTiesToLowestClassAndBinarySign()
    {
        // Three classes, rows 0 and 2 identical → a tie between classes 10 and 30 goes to 10.
        var m = new LinearSvmModel([10, 20, 30], 2, [1, 0, 0, 1, 1, 0], [0, -5, 0], new SvmOptions());
        Assert.Equal(10, m.Predict([1f, 0f]));
        Assert.Equal(20, m.Predict([0f, 9f]));
        Assert.Equal([1.0, -5.0, 1.0], m.DecisionFunction([1f, 0f]));
        Assert.Equal([10, 20], m.PredictBatch([3f, 1f, 0f, 9f], 2));
        var bin = new LinearSvmModel([-1, 4], 1, [2], [-1], new SvmOptions());
        Assert.Equal(4, bin.Predict([1f]));
        Assert.Equal(-1, bin.Predict([0.25f]));
        Assert.Throws<ArgumentException>(() => new LinearSvmModel([1, 2, 3], 2, new double[4], new double[3], new SvmOptions()));
    }

    [Fact]
    public void BadInputIsRefusedWithNames()
    {
        var X = new float[] { 1, 2, 3, float.NaN };
        Assert.Contains("[1, 1]", Assert.Throws<ArgumentException>(() => LinearSvm.TrainOneVsRest(X, 2, 2, [0, 1])).Message);
        Assert.Contains("at least 2 classes", Assert.Throws<ArgumentException>(() => LinearSvm.TrainOneVsRest([1, 2, 3, 4], 2, 2, [5, 5])).Message);
        Assert.Contains("y", Assert.Throws<ArgumentException>(() => LinearSvm.TrainOneVsRest([1, 2, 3, 4], 2, 2, [5])).Message);
        Assert.Contains("C", Assert.Throws<ArgumentException>(() => LinearSvm.TrainOneVsRest([1, 2, 3, 4], 2, 2, [0, 1], new SvmOptions(C: 0))).Message);
    }
}

public sealed class ClassificationReportTests
{
    [Fact]
    public void MatchesHandComputedNumbers()
    {
        // true 0 0 0 1 1 2, predicted 0 1 0 1 2 2; class 3 never occurs.
        var r = ClassificationReport.Compute([0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 2, 2], 4);
        Assert.Equal(4.0 / 6, r.Accuracy, 12);
        Assert.Equal(new[] { 1.0, 0.5, 0.5, 0.0 }, r.Precision);
        Assert.Equal(new[] { 2.0 / 3, 0.5, 1.0, 0.0 }, r.Recall);
        Assert.Equal(0.8, r.F1[0], 12);
        Assert.Equal(0.5, r.F1[1], 12);
        Assert.Equal(2.0 / 3, r.F1[2], 12);
        Assert.Equal(0.0, r.F1[3]);
        Assert.Equal(new[] { 3, 2, 1, 0 }, r.Support);
        Assert.Equal(r.Recall, r.PerClassAccuracy);
        Assert.Equal(2, r.Confusion[0, 0]);
        Assert.Equal(1, r.Confusion[0, 1]);
        Assert.Equal(1, r.Confusion[1, 2]);
        Assert.Equal(0, r.Confusion[2, 1]);
        Assert.Equal((0.8 + 0.5 + 2.0 / 3) / 4, r.MacroF1, 12);
        Assert.Contains("accuracy", r.ToText());
        Assert.Throws<ArgumentException>(() => ClassificationReport.Compute([0, 4], [0, 0], 4));
    }

    [Fact]
    public void MatchesScikitLearnOnRandomLabels()
    {
        var rng = new Random(5);
        var t = Enumerable.Range(0, 200).Select(_ => rng.Next(6)).ToArray();
        var p = t.Select(v => rng.NextDouble() < 0.6 ? v : rng.Next(6)).ToArray();
        var r = ClassificationReport.Compute(t, p, 6);
        string py = ReferenceTools.RunPython("""
            import sys, numpy as np
            from sklearn.metrics import precision_recall_fscore_support, accuracy_score
            t = np.array([int(v) for v in sys.argv[1].split(',')]); p = np.array([int(v) for v in sys.argv[2].split(',')])
            pr, rc, f1, s = precision_recall_fscore_support(t, p, labels=range(6), zero_division=0)
            print(' '.join(repr(float(v)) for v in [accuracy_score(t, p), *pr, *rc, *f1]))
            """, string.Join(',', t), string.Join(',', p));
        var expected = py.Trim().Split(' ').Select(s => double.Parse(s, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        double[] ours = [r.Accuracy, .. r.Precision, .. r.Recall, .. r.F1];
        for (int i = 0; i < ours.Length; i++) Assert.Equal(expected[i], ours[i], 12);
    }
}
