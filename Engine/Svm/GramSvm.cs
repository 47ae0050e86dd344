using Tp7.Engine.Kernels;

namespace Tp7.Engine.Svm;

/// <summary>
/// Linear SVM training from a precomputed Gram matrix K = X Xᵀ instead of the rows X: the same dual coordinate
/// descent as <see cref="LinearSvm"/> (LinearSvm.SolveL2rL1L2Svc, Hsieh et al. 2008, liblinear's solve_l2r_l1l2_svc),
/// with w kept as its margins F_j = wᵀx_j on the n training rows. A coordinate step then reads F_i (O(1)) instead of
/// a D-long dot product, and moves F by a·K_i (O(n)) instead of w by a·x_i (O(D)): cheaper whenever D exceeds n,
/// as VGG16's pool5 (25088) and fc layers (4096) do for the ~1,200-row training parts of a cross-validation. One K
/// serves every C, every one-vs-rest class and, through its sub-matrices, every fold.
/// The classifier is kept in dual form, w = Σ_i coef_i x_i with coef_i = α_i y_i, and scores a row x from its kernel
/// values k_i = xᵀx_i. With the same seed the iterates are those of LinearSvm's solver up to rounding.
/// </summary>
internal static class GramSvm
{
    /// <summary>Rows reached through K (n, n) row-major: w ← w + a·x_i is F ← F + a·K_i, wᵀx_i is F_i.</summary>
    internal readonly struct GramRows(float[] K, int n) : LinearSvm.IDualRows
    {
        public double Margin(LinearSvm.DualProblem p, int i) => p.F[i];
        public void Add(LinearSvm.DualProblem p, int i, double a) => DenseOps.Axpy(a, new ReadOnlySpan<float>(K, i * n, n), p.F);
        public void Clear(LinearSvm.DualProblem p) => Array.Clear(p.F);
    }

    /// <summary>K = A Bᵀ for rows A (na, d) and B (nb, d): (na, nb) row-major, float products and sums (Gemm.Host,
    /// on all cores). With A and B the same array (and na = nb), the Gram matrix of the rows, computed as a
    /// symmetric rank-k update: the lower block triangle by row blocks, mirrored (about half the flops).</summary>
    public static float[] KernelMatrix(float[] A, int na, float[] B, int nb, int d)
    {
        Check.Length("A", A.LongLength, (long)na * d, $"(n={na}, D={d})");
        Check.Length("B", B.LongLength, (long)nb * d, $"(n={nb}, D={d})");
        var K = new float[(long)na * nb];
        if (na == 0 || nb == 0) return K;
        if (!ReferenceEquals(A, B) || na != nb)
        {
            Gemm.Host(K, A, B, new GemmShape(na, nb, d, TransB: true));
            return K;
        }
        const int Block = 192;
        for (int r0 = 0; r0 < na; r0 += Block)
        {
            int r1 = Math.Min(na, r0 + Block);
            // K[r0:r1, 0:r1] = A[r0:r1] A[0:r1]ᵀ
            Gemm.Host(K.AsSpan(r0 * na), A.AsSpan(r0 * d, (r1 - r0) * d), A, new GemmShape(r1 - r0, r1, d, TransB: true, Ldc: na));
        }
        for (int i = 0; i < na; i++)
            for (int j = i + 1; j < na; j++) K[(long)i * na + j] = K[(long)j * na + i];
        return K;
    }

    /// <summary>
    /// Trains one-vs-rest classifiers (one for two classes, Classes[1] positive: LinearSvm's rule) on the n rows
    /// whose Gram matrix is <paramref name="K"/> (n, n), labels <paramref name="y"/> (n). Single-threaded: callers
    /// run many of these side by side. All classifiers share each pass over K.
    /// </summary>
    public static GramModel TrainOneVsRest(float[] K, int n, int[] y, SvmOptions o) => (GramModel)DualPath.Gram(K, n, y).Train(o, warmStart: false);
}

/// <summary>
/// One-vs-rest problems on one training set, trained for one C after another: with warmStart each solve starts
/// from the previous one's α (LinearSvm.SolveL2rL1L2Svc's warm start; C must not decrease along the path).
/// The rows are reached through their Gram matrix (<see cref="Gram"/>: a step costs O(n), for D &gt; n) or directly
/// (<see cref="Rows"/>: a step costs O(D), for D ≤ n, e.g. after PCA). <see cref="Train"/> returns a classifier that
/// scores evaluation rows given as kernel values (Gram) or as features (Rows).
/// </summary>
internal sealed class DualPath
{
    readonly float[] data;     // K (n, n) or X (n, d)
    readonly int n, d;         // d = 0: data is K
    readonly int[] classes;
    readonly LinearSvm.DualProblem[] problems;
    readonly double[] xSq;

    public static DualPath Gram(float[] K, int n, int[] y)
    {
        Check.Length("K", K.LongLength, (long)n * n, $"(n={n}, n={n})");
        var diag = new double[n];
        for (int i = 0; i < n; i++) diag[i] = K[(long)i * n + i];
        return new DualPath(K, n, 0, y, diag);
    }

    public static DualPath Rows(float[] X, int n, int d, int[] y)
    {
        Check.Length("X", X.LongLength, (long)n * d, $"(n={n}, D={d})");
        return new DualPath(X, n, d, y, LinearSvm.SquaredNorms(X, n, d));
    }

    DualPath(float[] data, int n, int d, int[] y, double[] xSq)
    {
        Check.Length("y", y.Length, n, $"(n={n})");
        this.data = data;
        this.n = n;
        this.d = d;
        this.xSq = xSq;
        classes = [.. y.Distinct().Order()];
        if (classes.Length < 2)
            throw new ArgumentException($"y: training needs at least 2 classes, got only label {classes[0]} in {n} samples");
        int m = classes.Length == 2 ? 1 : classes.Length;
        problems = new LinearSvm.DualProblem[m];
        for (int c = 0; c < m; c++)
        {
            int positive = m == 1 ? classes[1] : classes[c];
            var yc = new sbyte[n];
            for (int i = 0; i < n; i++) yc[i] = y[i] == positive ? (sbyte)1 : (sbyte)-1;
            problems[c] = d == 0 ? LinearSvm.DualProblem.WithMargins(yc) : new LinearSvm.DualProblem(yc, d);
        }
    }

    public IDualClassifier Train(SvmOptions o, bool warmStart)
    {
        o.Validate();
        ulong seed = (ulong)(uint)o.Seed;
        if (d == 0) LinearSvm.SolveL2rL1L2Svc(new GramSvm.GramRows(data, n), n, xSq, problems, o, seed, warmStart);
        else LinearSvm.SolveL2rL1L2Svc(new LinearSvm.PrimalRows(data, d), n, xSq, problems, o, seed, warmStart);
        int m = problems.Length;
        var bias = new double[m];
        var iterations = new int[m];
        int hits = 0;
        for (int c = 0; c < m; c++)
        {
            bias[c] = o.BiasScale * problems[c].WBias;
            iterations[c] = problems[c].Iterations;
            if (problems[c].HitLimit) hits++;
        }
        if (d > 0)
        {
            var w = new double[(long)m * d];
            for (int c = 0; c < m; c++)
                for (int j = 0; j < d; j++) w[(long)c * d + j] = problems[c].W[j];
            return new PrimalClassifier(new LinearSvmModel(classes, d, w, bias, o, iterations), hits);
        }
        var coef = new double[(long)m * n];
        for (int c = 0; c < m; c++)
            for (int i = 0; i < n; i++) coef[(long)c * n + i] = problems[c].Alpha[i] * problems[c].Y[i];
        return new GramModel(classes, n, coef, bias, iterations, hits);
    }

    sealed record PrimalClassifier(LinearSvmModel Model, int IterationLimitHits) : IDualClassifier
    {
        public int[] Iterations => Model.Iterations;
        public int[] Predict(float[] rows, int count)
        {
            int d = Model.NumFeatures;
            Check.Length("rows", rows.LongLength, (long)count * d, $"(rows={count}, D={d})");
            var pred = new int[count];
            for (int r = 0; r < count; r++) pred[r] = Model.Predict(new ReadOnlySpan<float>(rows, r * d, d));
            return pred;
        }
    }
}

/// <summary>A classifier of <see cref="DualPath"/>: Predict takes what the path was built on, kernel values
/// (rows, n) for a Gram path, features (rows, D) for a row path.</summary>
internal interface IDualClassifier
{
    int[] Iterations { get; }
    int IterationLimitHits { get; }
    int[] Predict(float[] rows, int count);
}

/// <summary>
/// A linear SVM in dual form over its n training rows: decision_c(x) = Σ_i Coef[c, i]·(xᵀx_i) + Bias[c]. Prediction
/// follows <see cref="LinearSvmModel"/>: the largest decision, first maximum on ties; one classifier for two classes.
/// </summary>
internal sealed record GramModel(int[] Classes, int TrainRows, double[] Coef, double[] Bias, int[] Iterations, int IterationLimitHits) : IDualClassifier
{
    public int NumClassifiers => Bias.Length;

    /// <summary>The primal weights w_c = Σ_i Coef[c, i] x_i for the training rows <paramref name="X"/> (n, d), row-major (m, d).</summary>
    public double[] PrimalWeights(float[] X, int d)
    {
        Check.Length("X", X.LongLength, (long)TrainRows * d, $"(n={TrainRows}, D={d})");
        var w = new double[(long)NumClassifiers * d];
        for (int c = 0; c < NumClassifiers; c++)
            for (int i = 0; i < TrainRows; i++)
            {
                double a = Coef[(long)c * TrainRows + i];
                if (a != 0) DenseOps.Axpy(a, new ReadOnlySpan<float>(X, i * d, d), w.AsSpan(c * d, d));
            }
        return w;
    }

    /// <summary>Predicted labels of rows given by their kernel values <paramref name="kernel"/> (rows, TrainRows): row r,
    /// column i holds x_rᵀx_i.</summary>
    public int[] Predict(float[] kernel, int rows)
    {
        int n = TrainRows, m = NumClassifiers;
        Check.Length("kernel", kernel.LongLength, (long)rows * n, $"(rows={rows}, n={n})");
        var pred = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            var k = new ReadOnlySpan<float>(kernel, r * n, n);
            int best = 0;
            double bestScore = double.NegativeInfinity;
            for (int c = 0; c < m; c++)
            {
                double score = DenseOps.Dot(new ReadOnlySpan<double>(Coef, c * n, n), k) + Bias[c];
                if (m == 1) { best = score > 0 ? 1 : 0; break; }
                if (c == 0 || score > bestScore) (best, bestScore) = (c, score);
            }
            pred[r] = Classes[best];
        }
        return pred;
    }
}
