using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra.Factorization;
using Tp7.Engine.IO;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Analysis;

/// <summary>
/// Principal component analysis fitted exactly, as scikit-learn's <c>PCA(svd_solver='full')</c> defines it.
///
/// Problem: Xc = X - 1 meanᵀ (n x d). Its thin SVD Xc = U S Vᵀ gives the components (rows of Vᵀ), the explained
/// variance S²/(n-1) and the ratio S²/‖Xc‖²_F. We never form the SVD: the eigenvalues of the symmetric matrix
/// G = Xc Xcᵀ (n x n, when n &lt; d) or C = Xcᵀ Xc (d x d, otherwise) are S², their eigenvectors are U (resp. V),
/// and V = Xcᵀ U S⁻¹ (Golub and Van Loan, Matrix Computations, 4th ed., §8.6.1: the SVD of A from the symmetric
/// eigenproblem of AᵀA or AAᵀ). The product runs through our float32 GEMM; the eigenproblem in double through
/// MathNet.Numerics' symmetric EVD (Householder tridiagonalisation + implicit QL, the EISPACK tred2/tql2 pair).
/// Signs follow scikit-learn's <c>svd_flip(U, Vt)</c> (u-based): each column of U has its largest-|.| entry
/// positive, the first such entry when several tie, so transformed rows match scikit-learn's.
///
/// Accuracy: a Gram entry sums d float32 products in FMA blocks of 256 (relative error ~1e-6 of ‖x_i‖‖x_j‖), so
/// eigenvalues move by ~1e-6 of the largest; the total variance, which every ratio divides by, is summed in double
/// from the data. Components whose eigenvalue is below <see cref="NullEigenvalueRatio"/> of the largest carry no
/// signal above that rounding (Xcᵀu is noise there): they are made orthogonal to the earlier ones in double.
/// </summary>
public sealed class PcaModel
{
    /// <summary>Eigenvalues below this fraction of the largest are treated as zero-variance directions.</summary>
    public const double NullEigenvalueRatio = 1e-5;

    public int InputDim { get; }
    public int Components { get; }
    /// <summary>Rows the model was fitted on (N).</summary>
    public int Samples { get; }
    /// <summary>(D) the training rows' mean.</summary>
    public float[] Mean { get; }
    /// <summary>(K, D) orthonormal rows, decreasing variance.</summary>
    public float[] ComponentsRowMajor { get; }
    /// <summary>(K) eigenvalue / (N - 1).</summary>
    public double[] ExplainedVariance { get; }
    /// <summary>(K) explained variance / <see cref="TotalVariance"/>.</summary>
    public double[] ExplainedVarianceRatio { get; }
    /// <summary>Sum of every column's variance (ddof 1), the trace of the covariance, over all D directions.</summary>
    public double TotalVariance { get; }
    public double FitSeconds { get; }

    PcaModel(int d, int k, int samples, float[] mean, float[] components, double[] explainedVariance, double totalVariance, double fitSeconds)
    {
        InputDim = d;
        Components = k;
        Samples = samples;
        Mean = mean;
        ComponentsRowMajor = components;
        ExplainedVariance = explainedVariance;
        TotalVariance = totalVariance;
        ExplainedVarianceRatio = explainedVariance.Select(v => v / totalVariance).ToArray();
        FitSeconds = fitSeconds;
    }

    /// <summary>
    /// Fits on <paramref name="n"/> rows of <paramref name="X"/> (n x d, row-major). k ≤ min(n, d) (scikit-learn's
    /// rule), else an <see cref="ArgumentException"/> naming k. <paramref name="maxThreads"/>: cores it may use (the
    /// sweep runs several fits in parallel); 0 = all.
    /// </summary>
    public static PcaModel Fit(float[] X, int n, int d, int k, int maxThreads = 0, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(X);
        if (n < 2) throw new ArgumentException($"PCA needs at least 2 training rows, got {n}", nameof(n));
        if (d < 1) throw new ArgumentException($"PCA needs at least 1 feature dimension, got {d}", nameof(d));
        if (X.Length < (long)n * d)
            throw new ArgumentException($"PCA input holds {X.Length} values, {n} rows x {d} dimensions need {(long)n * d}", nameof(X));
        if (k < 1 || k > Math.Min(n, d))
            throw new ArgumentException(
                $"PCA k = {k} components must be between 1 and min(rows, dimensions) = min({n}, {d}) = {Math.Min(n, d)}", nameof(k));
        if (maxThreads < 0) throw new ArgumentOutOfRangeException(nameof(maxThreads), maxThreads, "maxThreads must be 0 (all cores) or positive");
        PcaModel? model = null;
        RunWithThreadLimit(maxThreads, cancellation, () => model = FitCore(X, n, d, k, cancellation));
        return model!;
    }

    static PcaModel FitCore(float[] X, int n, int d, int k, CancellationToken cancellation)
    {
        var clock = Stopwatch.StartNew();
        CheckFinite(X, n, d);
        var mean = new double[d];
        for (int i = 0; i < n; i++)
        {
            var row = new ReadOnlySpan<float>(X, i * d, d);
            for (int j = 0; j < d; j++) mean[j] += row[j];
        }
        for (int j = 0; j < d; j++) mean[j] /= n;
        // (n, d) centred rows in float32 for the GEMM; the total variance from the same differences in double.
        var xc = GC.AllocateUninitializedArray<float>(checked(n * d));
        double sumSquares = 0;
        for (int i = 0; i < n; i++)
        {
            double rowSum = 0;
            for (int j = 0; j < d; j++)
            {
                double v = X[(long)i * d + j] - mean[j];
                xc[(long)i * d + j] = (float)v;
                rowSum += v * v;
            }
            sumSquares += rowSum;
        }
        double totalVariance = sumSquares / (n - 1);
        if (!(totalVariance > 0))
            throw new ArgumentException($"PCA input: all {n} rows are identical, there is no variance to explain");
        cancellation.ThrowIfCancellationRequested();

        bool gram = n < d;
        int m = gram ? n : d;
        // (m, m) symmetric: Xc Xcᵀ or Xcᵀ Xc.
        var product = new float[(long)m * m];
        Gemm.Host(product, xc, xc, gram ? new GemmShape(n, n, d, TransB: true) : new GemmShape(d, d, n, TransA: true));
        cancellation.ThrowIfCancellationRequested();

        var (values, vectors) = SymmetricEigen(product, m, k);
        cancellation.ThrowIfCancellationRequested();

        var components = new float[(long)k * d];
        var explained = new double[k];
        for (int c = 0; c < k; c++) explained[c] = Math.Max(values[c], 0) / (n - 1);
        if (gram)
        {
            // vectors (m = n, k) column c = u_c; sign rule on u, then V = S⁻¹ Uᵀ Xc.
            var ut = new float[(long)k * n];
            for (int c = 0; c < k; c++)
            {
                double sign = ArgMaxAbsSign(vectors, n, k, c);
                for (int i = 0; i < n; i++) ut[(long)c * n + i] = (float)(sign * vectors[(long)i * k + c]);
            }
            Gemm.Host(components, ut, xc, new GemmShape(k, d, n));
            double largest = Math.Max(values[0], 0);
            for (int c = 0; c < k; c++)
            {
                var row = components.AsSpan(c * d, d);
                if (values[c] > NullEigenvalueRatio * largest)
                {
                    float scale = (float)(1 / Math.Sqrt(values[c]));
                    for (int j = 0; j < d; j++) row[j] *= scale;
                }
                else OrthogonalComplement(components, c, d);
            }
        }
        else
        {
            // vectors (m = d, k) column c = v_c; the sign rule needs the scores u_c ∝ Xc v_c.
            var vt = new float[(long)k * d];
            for (int c = 0; c < k; c++)
                for (int j = 0; j < d; j++) vt[(long)c * d + j] = (float)vectors[(long)j * k + c];
            var scores = new float[(long)n * k];
            Gemm.Host(scores, xc, vt, new GemmShape(n, k, d, TransB: true));
            for (int c = 0; c < k; c++)
            {
                int best = 0;
                for (int i = 1; i < n; i++)
                    if (Math.Abs(scores[(long)i * k + c]) > Math.Abs(scores[(long)best * k + c])) best = i;
                float sign = scores[(long)best * k + c] < 0 ? -1f : 1f;
                for (int j = 0; j < d; j++) components[(long)c * d + j] = sign * vt[(long)c * d + j];
            }
        }
        var meanF = mean.Select(v => (float)v).ToArray();
        return new PcaModel(d, k, n, meanF, components, explained, totalVariance, clock.Elapsed.TotalSeconds);
    }

    /// <summary>The first <paramref name="k"/> components (k ≤ <see cref="Components"/>): the same model as Fit with k.</summary>
    public PcaModel Truncate(int k)
    {
        if (k < 1 || k > Components)
            throw new ArgumentException($"PCA truncate: k = {k} must be between 1 and the model's {Components} components", nameof(k));
        if (k == Components) return this;
        return new PcaModel(InputDim, k, Samples, Mean, ComponentsRowMajor.AsSpan(0, k * InputDim).ToArray(),
            ExplainedVariance.AsSpan(0, k).ToArray(), TotalVariance, FitSeconds);
    }

    /// <summary>(n, K) = (X - Mean) Componentsᵀ, X (n, D) row-major.</summary>
    public float[] Transform(float[] X, int n)
    {
        ArgumentNullException.ThrowIfNull(X);
        int d = InputDim;
        if (n < 0 || X.Length < (long)n * d)
            throw new ArgumentException($"PCA transform: {n} rows of {d} dimensions need {(long)n * d} values, the input holds {X.Length}", nameof(X));
        var result = new float[(long)n * Components];
        if (n == 0) return result;
        var xc = GC.AllocateUninitializedArray<float>(checked(n * d));
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++) xc[(long)i * d + j] = X[(long)i * d + j] - Mean[j];
        Gemm.Host(result, xc, ComponentsRowMajor, new GemmShape(n, Components, d, TransB: true));
        return result;
    }

    // ----- file -----

    const string Format = "tp7-pca", Version = "1";

    /// <summary>
    /// safetensors: `mean` (D), `components` (K, D), `explained_variance` (K) in float32 for any reader, and
    /// metadata (format, version, samples, total variance, and the explained variances as round-trip doubles, so a
    /// loaded model reports exactly the fitted ratios).
    /// </summary>
    public void Save(string path)
    {
        var meta = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["version"] = Version,
            ["samples"] = Samples.ToString(CultureInfo.InvariantCulture),
            ["total_variance"] = TotalVariance.ToString("R", CultureInfo.InvariantCulture),
            ["fit_seconds"] = FitSeconds.ToString("R", CultureInfo.InvariantCulture),
            ["explained_variance"] = JsonSerializer.Serialize(ExplainedVariance),
        };
        SafeTensorsWriter.Write(path,
        [
            ("mean", [InputDim], Mean), ("components", [Components, InputDim], ComponentsRowMajor),
            ("explained_variance", [Components], ExplainedVariance.Select(v => (float)v).ToArray()),
        ], meta);
    }

    public static PcaModel Load(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        string Meta(string key) => f.Metadata.TryGetValue(key, out var v) ? v
            : throw new InvalidDataException($"{path}: metadata '{key}' missing; not a PCA model written by tp7");
        if (Meta("format") != Format) throw new InvalidDataException($"{path}: format '{Meta("format")}', expected '{Format}'");
        if (Meta("version") != Version) throw new InvalidDataException($"{path}: PCA model version '{Meta("version")}', this tp7 reads '{Version}'");
        var ci = f.Info("components");
        if (ci.Shape.Count != 2 || ci.Shape[0] < 1 || ci.Shape[1] < 1)
            throw new InvalidDataException($"{path}: tensor 'components' has shape {ci.ShapeText}, expected (K, D)");
        int k = checked((int)ci.Shape[0]), d = checked((int)ci.Shape[1]);
        void Expect(string key, params long[] shape)
        {
            var info = f.Info(key);
            if (!info.Shape.SequenceEqual(shape))
                throw new InvalidDataException($"{path}: tensor '{key}' has shape {info.ShapeText}, expected {TensorInfo.FormatShape(shape)} for {k} components of {d} dimensions");
        }
        Expect("mean", d);
        Expect("explained_variance", k);
        var variance = JsonSerializer.Deserialize<double[]>(Meta("explained_variance"));
        if (variance is null || variance.Length != k)
            throw new InvalidDataException($"{path}: metadata 'explained_variance' holds {variance?.Length ?? 0} values, expected {k}");
        double Number(string key) => double.TryParse(Meta(key), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v
            : throw new InvalidDataException($"{path}: metadata '{key}' = '{Meta(key)}' is not a number");
        double total = Number("total_variance");
        if (!(total > 0)) throw new InvalidDataException($"{path}: metadata 'total_variance' = {total} must be positive");
        return new PcaModel(d, k, (int)Number("samples"), f.ReadFloat32("mean"), f.ReadFloat32("components"),
            variance, total, Number("fit_seconds"));
    }

    // ----- helpers -----

    static void CheckFinite(float[] X, int n, int d)
    {
        for (long i = 0; i < (long)n * d; i++)
            if (!float.IsFinite(X[i]))
                throw new ArgumentException($"PCA input: row {i / d}, column {i % d} is {X[i]}; features must be finite", nameof(X));
    }

    /// <summary>
    /// The k largest eigenpairs of the symmetric (m, m) matrix <paramref name="a"/>: eigenvalues descending and
    /// eigenvectors as columns of an (m, k) row-major array.
    /// </summary>
    static (double[] Values, double[] Vectors) SymmetricEigen(float[] a, int m, int k)
    {
        // Symmetrise: the GEMM's two triangles round differently.
        var sym = new double[(long)m * m];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++)
                sym[(long)i * m + j] = 0.5 * ((double)a[(long)i * m + j] + a[(long)j * m + i]);
        var evd = Matrix<double>.Build.Dense(m, m, sym).Evd(Symmetricity.Symmetric);
        var lambda = evd.EigenValues.Select(z => z.Real).ToArray();
        var order = Enumerable.Range(0, m).OrderByDescending(i => lambda[i]).ThenBy(i => i).ToArray();
        var q = evd.EigenVectors;
        var values = new double[k];
        var vectors = new double[(long)m * k];
        for (int c = 0; c < k; c++)
        {
            values[c] = lambda[order[c]];
            var col = q.Column(order[c]);
            for (int i = 0; i < m; i++) vectors[(long)i * k + c] = col[i];
        }
        return (values, vectors);
    }

    /// <summary>+1 or -1: the sign of column c's largest-|.| entry (the first on ties), as svd_flip takes it.</summary>
    static double ArgMaxAbsSign(double[] vectors, int rows, int cols, int c)
    {
        int best = 0;
        for (int i = 1; i < rows; i++)
            if (Math.Abs(vectors[(long)i * cols + c]) > Math.Abs(vectors[(long)best * cols + c])) best = i;
        return vectors[(long)best * cols + c] < 0 ? -1 : 1;
    }

    /// <summary>
    /// Replaces row c of <paramref name="v"/> (rows of length d) by a unit vector orthogonal to rows 0..c-1: the row
    /// itself, else the standard basis vectors in turn, with two passes of classical Gram-Schmidt in double
    /// ("twice is enough": Giraud, Langou, Rozložník, Comput. Math. Appl. 50, 2005).
    /// </summary>
    static void OrthogonalComplement(float[] v, int c, int d)
    {
        var x = new double[d];
        for (int candidate = -1; candidate < d; candidate++)
        {
            if (candidate < 0) for (int j = 0; j < d; j++) x[j] = v[(long)c * d + j];
            else { Array.Clear(x); x[candidate] = 1; }
            double before = Math.Sqrt(x.Sum(t => t * t));
            if (before == 0) continue;
            for (int pass = 0; pass < 2; pass++)
                for (int r = 0; r < c; r++)
                {
                    double dot = 0;
                    for (int j = 0; j < d; j++) dot += x[j] * v[(long)r * d + j];
                    for (int j = 0; j < d; j++) x[j] -= dot * v[(long)r * d + j];
                }
            double after = Math.Sqrt(x.Sum(t => t * t));
            if (after > 0.5 * before)
            {
                for (int j = 0; j < d; j++) v[(long)c * d + j] = (float)(x[j] / after);
                return;
            }
        }
        throw new InvalidOperationException($"PCA: no direction orthogonal to the first {c} components in {d} dimensions");
    }

    /// <summary>
    /// Runs <paramref name="work"/> so that it and every Parallel.For inside it (the GEMM's, which schedule on
    /// TaskScheduler.Current) use at most <paramref name="maxThreads"/> threads.
    /// </summary>
    static void RunWithThreadLimit(int maxThreads, CancellationToken cancellation, Action work)
    {
        if (maxThreads == 0 || maxThreads >= Environment.ProcessorCount) { work(); return; }
        var pair = new ConcurrentExclusiveSchedulerPair(TaskScheduler.Default, maxThreads);
        try
        {
            Task.Factory.StartNew(work, cancellation, TaskCreationOptions.DenyChildAttach, pair.ConcurrentScheduler).GetAwaiter().GetResult();
        }
        finally { pair.Complete(); }
    }
}
