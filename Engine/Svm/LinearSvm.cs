using Tp7.Engine.Kernels;

namespace Tp7.Engine.Svm;

/// <summary>Loss of the linear SVM: liblinear's L2-loss (-s 1, scikit-learn's default) or L1-loss (-s 3).</summary>
public enum SvmLoss
{
    /// <summary>max(0, 1 − y·wᵀx)²; liblinear <c>-s 1</c>, sklearn <c>LinearSVC(loss='squared_hinge')</c>.</summary>
    SquaredHinge,
    /// <summary>max(0, 1 − y·wᵀx); liblinear <c>-s 3</c>, sklearn <c>LinearSVC(loss='hinge')</c>.</summary>
    Hinge,
}

/// <summary>
/// Training options, with scikit-learn <c>LinearSVC</c>'s defaults. <paramref name="Tolerance"/> is liblinear's
/// <c>-e</c> (sklearn's <c>tol</c>, 1e-4; liblinear's own command-line default is 0.1).
/// <paramref name="BiasScale"/> is liblinear's <c>-B</c> / sklearn's <c>intercept_scaling</c>: every row gets an
/// extra feature of this value whose weight is regularised like the others; 0 trains without a bias.
/// </summary>
public sealed record SvmOptions(
    double C = 1,
    SvmLoss Loss = SvmLoss.SquaredHinge,
    double Tolerance = 1e-4,
    int MaxIterations = 1000,
    double BiasScale = 1,
    int Seed = 0)
{
    internal void Validate()
    {
        if (!(C > 0) || double.IsInfinity(C)) throw new ArgumentException($"C must be a positive finite number, got {C}");
        if (!(Tolerance > 0)) throw new ArgumentException($"the tolerance must be a positive number, got {Tolerance}");
        if (MaxIterations < 1) throw new ArgumentException($"the iteration limit must be at least 1, got {MaxIterations}");
        if (!(BiasScale >= 0) || double.IsInfinity(BiasScale)) throw new ArgumentException($"the bias scale must be a finite number of at least 0, got {BiasScale}");
    }
}

/// <summary>One binary classifier: decision(x) = Weights·x + Bias (Bias = BiasScale · weight of the bias feature).</summary>
public sealed record BinarySvmResult(double[] Weights, double Bias, int Iterations, bool HitIterationLimit);

/// <summary>Linear SVM training: liblinear's dual coordinate descent, one-vs-rest for more than two classes.</summary>
public static class LinearSvm
{
    /// <summary>
    /// Trains one-vs-rest classifiers on dense rows <paramref name="X"/> (N, D), labels <paramref name="y"/> (N).
    /// Classes are the sorted distinct labels (scikit-learn's order). With two classes one classifier is trained,
    /// with Classes[1] as the positive class, as liblinear and scikit-learn do. Classifiers train in parallel.
    /// </summary>
    public static LinearSvmModel TrainOneVsRest(float[] X, int n, int d, int[] y, SvmOptions? options = null)
    {
        var o = options ?? new SvmOptions();
        o.Validate();
        CheckProblem(X, n, d, y);
        int[] classes = [.. y.Distinct().Order()];
        if (classes.Length < 2)
            throw new ArgumentException($"y: training needs at least 2 classes, got only label {classes[0]} in {n} samples");

        double[] xSq = SquaredNorms(X, n, d);
        int m = classes.Length == 2 ? 1 : classes.Length;
        var problems = new DualProblem[m];
        for (int k = 0; k < m; k++)
        {
            int positive = m == 1 ? classes[1] : classes[k];
            var yk = new sbyte[n];
            for (int i = 0; i < n; i++) yk[i] = y[i] == positive ? (sbyte)1 : (sbyte)-1;
            problems[k] = new DualProblem(yk, d);
        }
        // Classifiers are independent; each parallel group trains its classifiers together, sharing one pass over
        // X per outer iteration, so a row is read from memory once for the whole group instead of once per class
        // (X is 20 MB at 1200 × 4096; the group's weights stay in cache). Every group draws the same seeded
        // permutation sequence, so the result does not depend on the number of groups (cores).
        int groups = Math.Clamp(Environment.ProcessorCount, 1, m);
        Parallel.For(0, groups, g =>
        {
            int k0 = (int)((long)m * g / groups), k1 = (int)((long)m * (g + 1) / groups);
            SolveL2rL1L2Svc(new PrimalRows(X, d), n, xSq, problems.AsSpan(k0, k1 - k0), o, (ulong)(uint)o.Seed);
        });
        var results = problems.Select(p => p.Result(o.BiasScale)).ToArray();

        var W = new double[(long)m * d];
        var bias = new double[m];
        var iters = new int[m];
        var warnings = new List<string>();
        for (int k = 0; k < m; k++)
        {
            Array.Copy(results[k].Weights, 0, W, (long)k * d, d);
            bias[k] = results[k].Bias;
            iters[k] = results[k].Iterations;
            if (results[k].HitIterationLimit)
            {
                string who = m == 1 ? $"class {classes[1]} vs {classes[0]}" : $"class {classes[k]} vs rest";
                warnings.Add($"{who}: reached the iteration limit ({o.MaxIterations}) before the tolerance {o.Tolerance:g}; " +
                             "increase MaxIterations (the solution may be inaccurate)");
            }
        }
        return new LinearSvmModel(classes, d, W, bias, o, iters, warnings);
    }

    /// <summary>
    /// Trains one binary classifier; <paramref name="y"/> holds +1/−1 per row.
    /// </summary>
    public static BinarySvmResult SolveBinary(float[] X, int n, int d, sbyte[] y, SvmOptions? options = null)
    {
        var o = options ?? new SvmOptions();
        o.Validate();
        Check.Length("X", X.LongLength, (long)n * d, $"(N={n}, D={d})");
        Check.Length("y", y.Length, n, $"(N={n})");
        for (int i = 0; i < n; i++)
            if (y[i] is not (1 or -1)) throw new ArgumentException($"y[{i}] = {y[i]}; binary labels must be +1 or -1");
        CheckFinite(X, n, d);
        var problem = new DualProblem(y, d);
        SolveL2rL1L2Svc(new PrimalRows(X, d), n, SquaredNorms(X, n, d), new[] { problem }, o, (ulong)(uint)o.Seed);
        return problem.Result(o.BiasScale);
    }

    /// <summary>State of one binary dual problem: labels, the bias weight, α and the shrinking state, and what
    /// <see cref="IDualRows"/> keeps of w: w itself (D, float; see DenseOps.Dot for the accumulation) for
    /// <see cref="PrimalRows"/>, or the margins F_i = wᵀx_i of all n rows (double) for <see cref="GramSvm"/>'s rows.
    /// α, the bias weight and all gradients are double.</summary>
    internal sealed class DualProblem
    {
        public readonly sbyte[] Y;
        public readonly float[] W;
        public readonly double[] F;
        public double WBias;

        /// <summary>A problem whose w is kept explicitly (D floats).</summary>
        public DualProblem(sbyte[] y, int d) : this(y, new float[d], []) { }

        DualProblem(sbyte[] y, float[] w, double[] f)
        {
            Y = y;
            W = w;
            F = f;
            Alpha = new double[y.Length];
            Active = new bool[y.Length];
        }

        /// <summary>A problem whose w is kept as its margins on the n training rows (for a Gram-matrix solver).</summary>
        public static DualProblem WithMargins(sbyte[] y) => new(y, [], new double[y.Length]);

        public readonly double[] Alpha;
        public readonly bool[] Active;
        public int ActiveSize;
        public double PGmaxOld, PGminOld, PGmaxNew, PGminNew;
        public int Iterations;
        public bool Done, HitLimit;

        public BinarySvmResult Result(double biasScale) =>
            new([.. W.Select(v => (double)v)], biasScale * WBias, Iterations, HitLimit);
    }

    // Dual coordinate descent for L2-regularised L1- and L2-loss SVM.
    // Source: C.-J. Hsieh, K.-W. Chang, C.-J. Lin, S. S. Keerthi, S. Sundararajan, "A Dual Coordinate Descent
    // Method for Large-scale Linear SVM", ICML 2008: Algorithm 1 (coordinate descent) with the shrinking of
    // Algorithm 3 / Section 3.2, in the form of LIBLINEAR's solve_l2r_l1l2_svc (stopping test, shrinking bounds).
    //
    // Rows are x̃_i = [x_i, B] (B = BiasScale; the bias weight is regularised, liblinear -B B). Labels y_i = ±1.
    // Primal:  min_w  ½ wᵀw + C Σ_i ξ(w; x̃_i, y_i)
    //          L1-loss (hinge):          ξ = max(0, 1 − y_i wᵀx̃_i)
    //          L2-loss (squared hinge):  ξ = max(0, 1 − y_i wᵀx̃_i)²
    // Dual:    min_α  f(α) = ½ αᵀ Q̄ α − eᵀα   subject to 0 ≤ α_i ≤ U,
    //          Q̄ = Q + D,  Q_ij = y_i y_j x̃_iᵀ x̃_j,
    //          L1-loss: U = C, D_ii = 0;   L2-loss: U = ∞, D_ii = 1/(2C).
    // We keep w = Σ_i y_i α_i x̃_i, so the partial gradient costs one dot product:
    //          G = ∇_i f(α) = y_i wᵀx̃_i − 1 + D_ii α_i.
    // Projected gradient PG = G, except PG = min(G, 0) at α_i = 0 and PG = max(G, 0) at α_i = U.
    // Step on coordinate i (if |PG| > 1e-12): α_i ← min(max(α_i − G / QD_i, 0), U) with QD_i = Q̄_ii,
    // then w ← w + (α_i_new − α_i_old) y_i x̃_i.
    // Shrinking: a coordinate at a bound whose gradient points out of the box beyond last pass's extreme
    // projected gradient (G > PGmax_old at α_i = 0, G < PGmin_old at α_i = U) leaves the active set.
    // Stop when PGmax_new − PGmin_new ≤ eps over a pass; if coordinates were shrunk, first re-check with all of
    // them active (as liblinear does, so its -e and our Tolerance mean the same thing).
    //
    // Each outer iteration visits the active coordinates in a fresh random order. liblinear shuffles the active
    // prefix of an index array; we shuffle all n indices and skip inactive ones, which visits the active set in a
    // uniformly random order too, and lets several problems on the same X (one-vs-rest) share the pass: each row
    // is loaded once and used by every problem for which it is active. Problems do not interact, so each one's
    // iterates are exactly those it would have alone with the same permutation sequence.
    // Sets each problem's Iterations (outer passes) and HitLimit (stopped at MaxIterations).
    //
    // TRows says how the solver reaches the rows: wᵀx_i and w ← w + a·x_i (PrimalRows: w over D features; GramSvm:
    // the margins of all rows over a Gram matrix). xSq_i = x_iᵀx_i. A struct type argument, so the JIT specialises
    // the loop for each and inlines the two calls.
    //
    // warmStart: start from each problem's α (and its w) as a previous solve left them instead of α = 0, for a path
    // of ascending C (Chu, Ho, Lin, Lin, "Warm Start for Parameter Selection of Linear Classifiers", KDD 2015, which
    // LIBLINEAR's -C uses). The old α stays feasible: 0 ≤ α ≤ C_old ≤ C_new (L1 loss), α ≥ 0 (L2 loss).
    internal static void SolveL2rL1L2Svc<TRows>(TRows rows, int n, double[] xSq, Span<DualProblem> problems, SvmOptions o, ulong seed,
        bool warmStart = false)
        where TRows : struct, IDualRows
    {
        double C = o.C, eps = o.Tolerance, B = o.BiasScale;
        double U = o.Loss == SvmLoss.Hinge ? C : double.PositiveInfinity;
        double Dii = o.Loss == SvmLoss.Hinge ? 0 : 0.5 / C;

        var QD = new double[n];
        var index = new int[n];
        for (int i = 0; i < n; i++)
        {
            QD[i] = Dii + xSq[i] + B * B;
            index[i] = i;
        }
        foreach (var p in problems)
        {
            if (!warmStart)
            {
                rows.Clear(p);
                p.WBias = 0;
                Array.Clear(p.Alpha);
            }
            else if (U < double.PositiveInfinity)
                foreach (double a in p.Alpha)
                    if (a > U) throw new ArgumentException($"warm start: α = {a} exceeds C = {C}; the C path must be ascending");
            Array.Fill(p.Active, true);
            p.ActiveSize = n;
            p.PGmaxOld = double.PositiveInfinity;
            p.PGminOld = double.NegativeInfinity;
            p.Iterations = 0;
            p.Done = p.HitLimit = false;
        }
        var rng = new SplitMix64(seed);
        int remaining = problems.Length;
        while (remaining > 0)
        {
            for (int s = 0; s < n - 1; s++)
            {
                int j = s + rng.NextBelow(n - s);
                (index[s], index[j]) = (index[j], index[s]);
            }
            foreach (var p in problems)
            {
                p.PGmaxNew = double.NegativeInfinity;
                p.PGminNew = double.PositiveInfinity;
            }

            for (int s = 0; s < n; s++)
            {
                int i = index[s];
                foreach (var p in problems)
                {
                    if (p.Done || !p.Active[i]) continue;
                    double[] alpha = p.Alpha;
                    int yi = p.Y[i];
                    double G = yi * (rows.Margin(p, i) + p.WBias * B) - 1 + Dii * alpha[i];

                    double PG = 0;
                    if (alpha[i] == 0)
                    {
                        if (G > p.PGmaxOld)
                        {
                            p.Active[i] = false;
                            p.ActiveSize--;
                            continue;
                        }
                        if (G < 0) PG = G;
                    }
                    else if (alpha[i] == U)
                    {
                        if (G < p.PGminOld)
                        {
                            p.Active[i] = false;
                            p.ActiveSize--;
                            continue;
                        }
                        if (G > 0) PG = G;
                    }
                    else PG = G;

                    p.PGmaxNew = Math.Max(p.PGmaxNew, PG);
                    p.PGminNew = Math.Min(p.PGminNew, PG);

                    if (Math.Abs(PG) > 1e-12)
                    {
                        double alphaOld = alpha[i];
                        alpha[i] = Math.Min(Math.Max(alpha[i] - G / QD[i], 0.0), U);
                        double step = (alpha[i] - alphaOld) * yi;
                        rows.Add(p, i, step);
                        p.WBias += step * B;
                    }
                }
            }

            foreach (var p in problems)
            {
                if (p.Done) continue;
                p.Iterations++;
                if (p.PGmaxNew - p.PGminNew <= eps)
                {
                    if (p.ActiveSize == n) p.Done = true;
                    else
                    {
                        // Converged on the shrunk set: un-shrink and verify on all coordinates.
                        Array.Fill(p.Active, true);
                        p.ActiveSize = n;
                        p.PGmaxOld = double.PositiveInfinity;
                        p.PGminOld = double.NegativeInfinity;
                    }
                }
                else
                {
                    p.PGmaxOld = p.PGmaxNew <= 0 ? double.PositiveInfinity : p.PGmaxNew;
                    p.PGminOld = p.PGminNew >= 0 ? double.NegativeInfinity : p.PGminNew;
                }
                if (!p.Done && p.Iterations >= o.MaxIterations) p.Done = p.HitLimit = true;
                if (p.Done) remaining--;
            }
        }
    }

    /// <summary>How the dual solver reads and moves w along the rows x_i.</summary>
    internal interface IDualRows
    {
        /// <summary>wᵀx_i, without the bias feature.</summary>
        double Margin(DualProblem p, int i);
        /// <summary>w ← w + a·x_i.</summary>
        void Add(DualProblem p, int i, double a);
        /// <summary>w ← 0.</summary>
        void Clear(DualProblem p);
    }

    /// <summary>Rows (N, D) in memory; w kept explicitly in <see cref="DualProblem.W"/>.</summary>
    internal readonly struct PrimalRows(float[] X, int d) : IDualRows
    {
        public double Margin(DualProblem p, int i) => DenseOps.Dot(p.W, new ReadOnlySpan<float>(X, i * d, d));
        public void Add(DualProblem p, int i, double a) => DenseOps.Axpy(a, new ReadOnlySpan<float>(X, i * d, d), p.W);
        public void Clear(DualProblem p) => Array.Clear(p.W);
    }

    internal static double[] SquaredNorms(float[] X, int n, int d)
    {
        var sq = new double[n];
        for (int i = 0; i < n; i++) sq[i] = DenseOps.SquaredNorm(new ReadOnlySpan<float>(X, i * d, d));
        return sq;
    }

    private static void CheckProblem(float[] X, int n, int d, int[] y)
    {
        if (n < 1 || d < 1) throw new ArgumentException($"X: need at least one sample and one feature, got (N={n}, D={d})");
        if ((long)n * d > int.MaxValue) throw new ArgumentException($"X: (N={n}, D={d}) has more than {int.MaxValue} elements");
        Check.Length("X", X.LongLength, (long)n * d, $"(N={n}, D={d})");
        Check.Length("y", y.Length, n, $"(N={n})");
        CheckFinite(X, n, d);
    }

    private static void CheckFinite(float[] X, int n, int d)
    {
        long i = Tp7.Engine.IO.FiniteCheck.FirstNonFinite(X);
        if (i >= 0) throw new ArgumentException($"X: element [{i / d}, {i % d}] is {X[i]}; features must be finite");
    }
}

/// <summary>SplitMix64 (Steele, Lea, Flood 2014): a small, fixed generator so a seed means the same permutation
/// on every .NET version.</summary>
internal struct SplitMix64(ulong state)
{
    private ulong _state = state;

    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong Next() => Mix(_state += 0x9E3779B97F4A7C15UL);

    /// <summary>Uniform integer in [0, bound) by Lemire's multiply-shift (bias below 2^-32 for our bounds).</summary>
    public int NextBelow(int bound) => (int)(((Next() >> 32) * (ulong)(uint)bound) >> 32);
}
