using Tp7.Engine.Analysis;
using Tp7.Engine.IO;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>Seeded matrices for the PCA tests: relu-like feature rows and awkward ones.</summary>
internal static class PcaData
{
    static double Gauss(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    /// <summary>
    /// (n, d) non-negative L2-normalised rows, as relu7 features are: ReLU of a few latent factors with decreasing
    /// scales (so the leading eigenvalues are well apart) plus isotropic noise, then each row divided by its norm.
    /// </summary>
    public static float[] ReluRows(int n, int d, int seed, int factors = 8)
    {
        var rng = new Random(seed);
        var basis = new double[factors, d];
        for (int f = 0; f < factors; f++)
            for (int j = 0; j < d; j++) basis[f, j] = Gauss(rng);
        var X = new float[n * d];
        var row = new double[d];
        for (int i = 0; i < n; i++)
        {
            Array.Clear(row);
            for (int f = 0; f < factors; f++)
            {
                double z = Gauss(rng) * Math.Pow(0.6, f) * 3;
                for (int j = 0; j < d; j++) row[j] += z * basis[f, j];
            }
            double norm = 0;
            for (int j = 0; j < d; j++) { row[j] = Math.Max(0, row[j] + 0.5 * Gauss(rng) + 0.3); norm += row[j] * row[j]; }
            norm = Math.Sqrt(norm);
            for (int j = 0; j < d; j++) X[i * d + j] = (float)(row[j] / norm);
        }
        return X;
    }

    /// <summary>(n, d) of rank <paramref name="rank"/>: A (n, r) B (r, d), r &lt; min(n, d), plus an offset.</summary>
    public static float[] RankDeficient(int n, int d, int rank, int seed)
    {
        var rng = new Random(seed);
        var a = new double[n, rank];
        var b = new double[rank, d];
        for (int i = 0; i < n; i++) for (int r = 0; r < rank; r++) a[i, r] = Gauss(rng) * (rank - r);
        for (int r = 0; r < rank; r++) for (int j = 0; j < d; j++) b[r, j] = Gauss(rng);
        var X = new float[n * d];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++)
            {
                double v = 1.0;
                for (int r = 0; r < rank; r++) v += a[i, r] * b[r, j];
                X[i * d + j] = (float)v;
            }
        return X;
    }

    /// <summary>Relu rows where every row appears <paramref name="copies"/> times (n = distinct x copies), interleaved.</summary>
    public static float[] Duplicated(int distinct, int copies, int d, int seed)
    {
        var unique = ReluRows(distinct, d, seed);
        var X = new float[distinct * copies * d];
        for (int c = 0; c < copies; c++)
            for (int i = 0; i < distinct; i++)
                Array.Copy(unique, i * d, X, (c * distinct + i) * d, d);
        return X;
    }
}

/// <summary>PCA against scikit-learn 1.2.1's PCA(svd_solver='full') (tools/pca_reference.py) on both routes.</summary>
public sealed class PcaParityTests(ITestOutputHelper output) : IDisposable
{
    readonly ScratchDir tmp = new("tp7-pca");
    public void Dispose() => tmp.Dispose();

    sealed record Reference(double[] Mean, double[] Components, double[] Variance, double[] Ratio, double[] Transformed, double[] TransformedTest);

    Reference Sklearn(string name, float[] X, int n, int d, int k, float[] XTest, int nTest)
    {
        string x = tmp[name + "-X.npy"], xt = tmp[name + "-Xt.npy"], dir = tmp[name + "-sk"];
        Npy.Write(x, X, n, d);
        Npy.Write(xt, XTest, nTest, d);
        Python.Run("pca_reference.py", x, dir, "--k", k.ToString(), "--solver", "full", "--x-test", xt);
        double[] Read(string file) => Npy.ReadFloat64(Path.Combine(dir, file)).Data;
        return new(Read("mean.npy"), Read("components.npy"), Read("explained_variance.npy"), Read("explained_variance_ratio.npy"),
            Read("transformed.npy"), Read("transformed_test.npy"));
    }

    public static TheoryData<string, int, int, int> Cases => new()
    {
        // name, n, d, k: the Gram route (n < d) and the covariance route (n >= d), part and all of min(n, d).
        { "relu", 60, 300, 20 },
        { "relu", 60, 300, 60 },
        { "relu", 400, 48, 16 },
        { "relu", 400, 48, 48 },
        { "relu", 48, 48, 48 },
        { "rank-deficient", 50, 120, 50 },
        { "rank-deficient", 200, 30, 30 },
        { "duplicated", 60, 200, 40 },
        { "duplicated", 240, 40, 40 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesScikitLearnFullSolver(string kind, int n, int d, int k)
    {
        float[] all = kind switch
        {
            "relu" => PcaData.ReluRows(n + 20, d, seed: n * 1000 + d),
            "rank-deficient" => PcaData.RankDeficient(n + 20, d, rank: 7, seed: n + d),
            _ => PcaData.Duplicated((n + 20) / 4, 4, d, seed: n + 3 * d),
        };
        int nTest = all.Length / d - n;
        float[] X = all[..(n * d)], XTest = all[(n * d)..];
        var sk = Sklearn($"{kind}-{n}-{d}-{k}", X, n, d, k, XTest, nTest);
        var pca = PcaModel.Fit(X, n, d, k);

        Assert.Equal((d, k, n), (pca.InputDim, pca.Components, pca.Samples));
        double meanErr = pca.Mean.Select((v, j) => Math.Abs(v - sk.Mean[j])).Max();
        Assert.True(meanErr <= 1e-6, $"mean: max |diff| {meanErr:E2}");

        // Ratios within 1e-4 of scikit-learn's, every component; the variances to the same share of the total.
        double ratioErr = pca.ExplainedVarianceRatio.Select((v, i) => Math.Abs(v - sk.Ratio[i])).Max();
        double varErr = pca.ExplainedVariance.Select((v, i) => Math.Abs(v - sk.Variance[i])).Max() / pca.TotalVariance;
        double skTotal = sk.Variance[0] / sk.Ratio[0];
        Assert.True(Math.Abs(pca.TotalVariance - skTotal) <= 1e-6 * skTotal, $"total variance {pca.TotalVariance} vs scikit-learn's {skTotal}");

        // Components and transformed columns where the eigenvalue is apart from its neighbours (elsewhere the
        // basis of a near-degenerate subspace is arbitrary): equal including the sign svd_flip gives.
        double lambda0 = sk.Variance[0];
        var separated = Enumerable.Range(0, k).Where(i =>
            sk.Variance[i] > 1e-3 * lambda0
            && (i == 0 || sk.Variance[i - 1] - sk.Variance[i] > 2e-3 * lambda0)
            && (i + 1 >= sk.Variance.Length || sk.Variance[i] - sk.Variance[i + 1] > 2e-3 * lambda0)).ToArray();
        Assert.True(separated.Length >= 3, $"only {separated.Length} well-separated components: the data does not test much");
        double worstDot = 1;
        double worstT = 0, worstTTest = 0;
        var T = pca.Transform(X, n);
        var TTest = pca.Transform(XTest, nTest);
        double scale = Math.Sqrt(sk.Variance[0]);
        foreach (int c in separated)
        {
            double dot = 0;
            for (int j = 0; j < d; j++) dot += pca.ComponentsRowMajor[c * d + j] * sk.Components[c * d + j];
            worstDot = Math.Min(worstDot, dot);
            for (int i = 0; i < n; i++) worstT = Math.Max(worstT, Math.Abs(T[i * k + c] - sk.Transformed[i * k + c]) / scale);
            for (int i = 0; i < nTest; i++) worstTTest = Math.Max(worstTTest, Math.Abs(TTest[i * k + c] - sk.TransformedTest[i * k + c]) / scale);
        }
        // Orthonormal rows, including the zero-variance ones scikit-learn's SVD also completes the basis with.
        double orthoErr = 0;
        for (int a = 0; a < k; a++)
            for (int b = 0; b <= a; b++)
            {
                double dot = 0;
                for (int j = 0; j < d; j++) dot += (double)pca.ComponentsRowMajor[a * d + j] * pca.ComponentsRowMajor[b * d + j];
                orthoErr = Math.Max(orthoErr, Math.Abs(dot - (a == b ? 1 : 0)));
            }
        output.WriteLine($"{kind} n={n} d={d} k={k} ({(n < d ? "Gram" : "covariance")}): ratio max |diff| {ratioErr:E2}, " +
                         $"variance {varErr:E2} of total; {separated.Length} separated components, min dot {worstDot:F7}, " +
                         $"transformed max |diff| / sqrt(lambda1) {worstT:E2} (held-out {worstTTest:E2}); |VVt - I| {orthoErr:E2}; fit {pca.FitSeconds * 1e3:F1} ms");
        Assert.True(ratioErr <= 1e-4, $"explained variance ratio: max |diff| {ratioErr:E2} > 1e-4");
        Assert.True(varErr <= 1e-4, $"explained variance: max |diff| {varErr:E2} of the total > 1e-4");
        Assert.True(worstDot >= 0.9999, $"components: smallest dot with scikit-learn's {worstDot:F6} < 0.9999 (a flipped sign shows as -1)");
        Assert.True(worstT <= 1e-3, $"transformed training rows: max |diff| {worstT:E2} of sqrt(lambda1)");
        Assert.True(worstTTest <= 1e-3, $"transformed held-out rows: max |diff| {worstTTest:E2} of sqrt(lambda1)");
        Assert.True(orthoErr <= 1e-4, $"components not orthonormal: max |V Vt - I| {orthoErr:E2}");
    }
}

/// <summary>PCA's contract apart from scikit-learn: refusals, truncation, the file.</summary>
public sealed class PcaModelTests
{
    [Theory]
    [InlineData(30, 10, 11)]   // k > d
    [InlineData(8, 40, 9)]     // k > n
    [InlineData(8, 40, 0)]
    public void RefusesKOutsideOneToMinNd(int n, int d, int k)
    {
        var X = PcaData.ReluRows(n, d, seed: 1);
        var e = Assert.Throws<ArgumentException>(() => PcaModel.Fit(X, n, d, k));
        Assert.Contains($"k = {k}", e.Message);
        Assert.Contains($"min({n}, {d}) = {Math.Min(n, d)}", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void RefusesFewerThanTwoRowsNonFiniteInputAndConstantRows()
    {
        var one = PcaData.ReluRows(1, 10, seed: 2);
        Assert.Contains("at least 2 training rows, got 1", Assert.Throws<ArgumentException>(() => PcaModel.Fit(one, 1, 10, 1)).Message);
        var X = PcaData.ReluRows(20, 10, seed: 3);
        X[7 * 10 + 4] = float.NaN;
        Assert.Contains("row 7, column 4 is NaN", Assert.Throws<ArgumentException>(() => PcaModel.Fit(X, 20, 10, 3)).Message);
        var same = new float[20 * 10];
        Array.Fill(same, 0.25f);
        Assert.Contains("identical", Assert.Throws<ArgumentException>(() => PcaModel.Fit(same, 20, 10, 3)).Message);
    }

    [Theory]
    [InlineData(40, 150)]   // Gram route
    [InlineData(150, 40)]   // covariance route
    public void TruncateEqualsAFreshFit(int n, int d)
    {
        var X = PcaData.ReluRows(n, d, seed: 4);
        var full = PcaModel.Fit(X, n, d, Math.Min(n, d));
        var fresh = PcaModel.Fit(X, n, d, 12);
        var cut = full.Truncate(12);
        Assert.Equal(12, cut.Components);
        Assert.Equal(fresh.ExplainedVariance, cut.ExplainedVariance);
        Assert.Equal(fresh.ExplainedVarianceRatio, cut.ExplainedVarianceRatio);
        Assert.Equal(fresh.TotalVariance, cut.TotalVariance);
        Assert.Equal(fresh.Mean, cut.Mean);
        double worst = fresh.ComponentsRowMajor.Select((v, i) => Math.Abs(v - cut.ComponentsRowMajor[i])).Max();
        Assert.True(worst <= 1e-6, $"truncated components differ from a fresh fit's by {worst:E2}");
        Assert.Throws<ArgumentException>(() => full.Truncate(full.Components + 1));
    }

    [Fact]
    public void ThreadLimitGivesTheSameModel()
    {
        var X = PcaData.ReluRows(120, 700, seed: 5);
        var all = PcaModel.Fit(X, 120, 700, 30);
        var one = PcaModel.Fit(X, 120, 700, 30, maxThreads: 1);
        Assert.Equal(all.ExplainedVariance, one.ExplainedVariance);
        Assert.Equal(all.ComponentsRowMajor, one.ComponentsRowMajor);
    }

    [Fact]
    public void CancelledFitThrows()
    {
        var X = PcaData.ReluRows(50, 80, seed: 6);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => PcaModel.Fit(X, 50, 80, 5, maxThreads: 0, cts.Token));
        Assert.ThrowsAny<OperationCanceledException>(() => PcaModel.Fit(X, 50, 80, 5, maxThreads: 1, cts.Token));
    }

    [Fact]
    public void SaveLoadRoundTripsExactly()
    {
        using var tmp = new ScratchDir("tp7-pca-file");
        var X = PcaData.ReluRows(60, 90, seed: 7);
        var pca = PcaModel.Fit(X, 60, 90, 10);
        string path = tmp["model.safetensors"];
        pca.Save(path);
        var back = PcaModel.Load(path);
        Assert.Equal((pca.InputDim, pca.Components, pca.Samples), (back.InputDim, back.Components, back.Samples));
        Assert.Equal(pca.Mean, back.Mean);
        Assert.Equal(pca.ComponentsRowMajor, back.ComponentsRowMajor);
        Assert.Equal(pca.ExplainedVariance, back.ExplainedVariance);
        Assert.Equal(pca.ExplainedVarianceRatio, back.ExplainedVarianceRatio);
        Assert.Equal(pca.TotalVariance, back.TotalVariance);
        Assert.Equal(pca.Transform(X, 60), back.Transform(X, 60));

        string other = tmp["other.safetensors"];
        SafeTensorsWriter.Write(other, [("coef", [2L, 3L], new float[6])], new Dictionary<string, string> { ["format"] = "tp7-linear-svm", ["version"] = "1" });
        var e = Assert.Throws<InvalidDataException>(() => PcaModel.Load(other));
        Assert.Contains(other, e.Message);
        Assert.Contains("tp7-pca", e.Message);
    }
}
