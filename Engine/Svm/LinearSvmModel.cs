using Tp7.Engine.Kernels;

namespace Tp7.Engine.Svm;

/// <summary>
/// A trained linear SVM: decision_k(x) = W[k]·x + Bias[k]. For more than two classes there is one row per class
/// (one-vs-rest) and the prediction is the class with the largest decision value, ties going to the lowest class
/// index (scikit-learn's argmax). For two classes there is a single row scoring Classes[1] against Classes[0]
/// (positive → Classes[1]), as in scikit-learn's <c>coef_</c> of shape (1, D).
/// The constructor is public so a model can be rebuilt from stored weights.
/// </summary>
public sealed class LinearSvmModel
{
    /// <summary>Sorted class labels.</summary>
    public int[] Classes { get; }
    public int NumFeatures { get; }
    /// <summary>Weights, row-major (NumClassifiers, NumFeatures).</summary>
    public double[] W { get; }
    /// <summary>Intercepts (NumClassifiers); BiasScale times the learned bias-feature weight.</summary>
    public double[] Bias { get; }
    public SvmOptions Options { get; }
    /// <summary>Outer iterations each classifier took.</summary>
    public int[] Iterations { get; }
    /// <summary>Non-fatal problems met in training (e.g. a classifier stopped at the iteration limit).</summary>
    public IReadOnlyList<string> Warnings { get; }

    public int NumClassifiers => Bias.Length;

    public LinearSvmModel(int[] classes, int numFeatures, double[] w, double[] bias, SvmOptions options,
                          int[]? iterations = null, IReadOnlyList<string>? warnings = null)
    {
        if (classes.Length < 2) throw new ArgumentException($"classes: a model needs at least 2 classes, got {classes.Length}");
        for (int k = 1; k < classes.Length; k++)
            if (classes[k] <= classes[k - 1]) throw new ArgumentException("classes: labels must be sorted and distinct");
        int m = classes.Length == 2 ? 1 : classes.Length;
        Check.Length("bias", bias.Length, m, $"{classes.Length} classes");
        Check.Length("W", w.LongLength, (long)m * numFeatures, $"({m} classifiers, {numFeatures} features)");
        Classes = classes;
        NumFeatures = numFeatures;
        W = w;
        Bias = bias;
        Options = options;
        Iterations = iterations ?? new int[m];
        Warnings = warnings ?? [];
    }

    public ReadOnlySpan<double> WeightsOf(int classifier) => W.AsSpan(classifier * NumFeatures, NumFeatures);

    /// <summary>Decision values of one sample, one per classifier.</summary>
    public double[] DecisionFunction(ReadOnlySpan<float> x)
    {
        var scores = new double[NumClassifiers];
        DecisionFunction(x, scores);
        return scores;
    }

    public void DecisionFunction(ReadOnlySpan<float> x, Span<double> scores)
    {
        Check.Length("x", x.Length, NumFeatures, $"model with {NumFeatures} features");
        Check.Length("scores", scores.Length, NumClassifiers, $"{NumClassifiers} classifiers");
        for (int k = 0; k < NumClassifiers; k++) scores[k] = DenseOps.Dot(WeightsOf(k), x) + Bias[k];
    }

    /// <summary>Predicted label of one sample.</summary>
    public int Predict(ReadOnlySpan<float> x)
    {
        Span<double> scores = NumClassifiers <= 256 ? stackalloc double[NumClassifiers] : new double[NumClassifiers];
        DecisionFunction(x, scores);
        return Classes[ArgMax(scores)];
    }

    /// <summary>Decision values for rows X (N, D) → (N, NumClassifiers) row-major.</summary>
    public double[] DecisionFunctionBatch(float[] X, int n)
    {
        Check.Length("X", X.LongLength, (long)n * NumFeatures, $"(N={n}, D={NumFeatures})");
        int m = NumClassifiers, d = NumFeatures;
        var scores = new double[(long)n * m];
        Parallel.For(0, n, i => DecisionFunction(new ReadOnlySpan<float>(X, i * d, d), scores.AsSpan(i * m, m)));
        return scores;
    }

    /// <summary>Predicted labels for rows X (N, D).</summary>
    public int[] PredictBatch(float[] X, int n)
    {
        var scores = DecisionFunctionBatch(X, n);
        int m = NumClassifiers;
        var pred = new int[n];
        for (int i = 0; i < n; i++) pred[i] = Classes[ArgMax(scores.AsSpan(i * m, m))];
        return pred;
    }

    // Binary: one score, positive → index 1. Multi-class: first maximum wins (numpy argmax).
    private int ArgMax(ReadOnlySpan<double> scores)
    {
        if (scores.Length == 1) return scores[0] > 0 ? 1 : 0;
        int best = 0;
        for (int k = 1; k < scores.Length; k++)
            if (scores[k] > scores[best]) best = k;
        return best;
    }
}
