using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Fused softmax + cross-entropy over rows of logits, mean over rows (PyTorch's CrossEntropyLoss, reduction 'mean'):
//   loss = (1/rows) Σ_r [ log Σ_j exp(x_rj) - x_r,label_r ],   dlogits_rj = (softmax(x_r)_j - [j == label_r]) / rows.
// Gradient rule for every backward in this file: gradients of parameters accumulate (+=),
// gradients of activations overwrite (=); ZeroGrad clears them.

// ===== Host twin =====
public static class Loss
{
    /// <summary>
    /// dlogits (rows, cols), overwritten, = (softmax(logits) - onehot(labels)) / rows; returns the mean loss.
    /// Each row's log-sum-exp is max-subtracted and summed in double, and the mean accumulates in double.
    /// </summary>
    public static double SoftmaxCrossEntropyHost(Span<float> dlogits, ReadOnlySpan<float> logits, ReadOnlySpan<int> labels, int rows, int cols)
    {
        CheckArgs(rows, cols);
        Check.Length("dlogits", dlogits.Length, (long)rows * cols, (rows, cols));
        Check.Length("logits", logits.Length, (long)rows * cols, (rows, cols));
        Check.Length("labels", labels.Length, rows, (rows, cols));
        for (int r = 0; r < rows; r++)
            if ((uint)labels[r] >= (uint)cols)
                throw new ArgumentException($"labels: row {r} has label {labels[r]}, expected a class in [0, {cols})");
        double total = 0, invRows = 1.0 / rows;
        for (int r = 0; r < rows; r++)
        {
            var x = logits.Slice(r * cols, cols);
            var d = dlogits.Slice(r * cols, cols);
            float m = float.NegativeInfinity;
            foreach (var v in x) m = MathF.Max(m, v);
            double sum = 0;
            for (int j = 0; j < cols; j++) sum += Math.Exp((double)x[j] - m);
            double logSum = Math.Log(sum);
            total += logSum + m - x[labels[r]];
            for (int j = 0; j < cols; j++)
                d[j] = (float)((Math.Exp((double)x[j] - m) / sum - (j == labels[r] ? 1.0 : 0.0)) * invRows);
        }
        return total * invRows;
    }

    internal static void CheckArgs(int rows, int cols)
    {
        if (rows <= 0 || cols <= 0)
            throw new ArgumentException($"softmax cross-entropy: rows and cols must be positive, got {(rows, cols)}");
    }
}




// ===== ILGPU kernels =====

/// <summary>
/// Fused softmax + cross-entropy on an ILGPU accelerator, one group per row (the softmax kernel's reductions).
/// Kernels are compiled once in the constructor; launches go to the default stream and are not synchronised.
/// </summary>
public sealed class LossGpu
{
    // Shared-memory size of the reductions: the largest group size launched.
    private const int MaxGroup = 256;

    private readonly Accelerator _acc;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> _softmaxCe;

    public LossGpu(Accelerator a)
    {
        _acc = a;
        _softmaxCe = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(SoftmaxCrossEntropyKernel);
    }

    /// <summary>
    /// dlogits (rows, cols), overwritten, = (softmax(logits) - onehot(labels)) / rows, and rowLoss (rows) =
    /// -log softmax(logits_r)[label_r]; the caller sums rowLoss on the host in double and divides by rows.
    /// Labels live on the device, so they cannot be checked before launch: a row whose label is outside
    /// [0, cols) gets NaN in rowLoss and in its dlogits, which poisons the loss visibly.
    /// </summary>
    public void SoftmaxCrossEntropy(ArrayView<float> dlogits, ArrayView<float> rowLoss, ArrayView<float> logits, ArrayView<int> labels,
        int rows, int cols)
    {
        Loss.CheckArgs(rows, cols);
        Check.Length("dlogits", dlogits.Length, (long)rows * cols, (rows, cols));
        Check.Length("rowLoss", rowLoss.Length, rows, (rows, cols));
        Check.Length("logits", logits.Length, (long)rows * cols, (rows, cols));
        Check.Length("labels", labels.Length, rows, (rows, cols));
        // A barrier on ILGPU's CPU accelerator costs milliseconds per thread; a warp-sized group keeps it quick there.
        int gs = Accelerators.GroupSize(_acc, _acc.AcceleratorType == AcceleratorType.CPU ? 32 : MaxGroup);
        _softmaxCe(new KernelConfig(rows, gs), dlogits, rowLoss, logits, labels, rows, cols);
    }

    /// <summary>
    /// Group r handles row r: strided max and tree reduction in shared memory (group size a power of two), strided
    /// sum of exp(x - max) and a second reduction, then dlogits = (exp(x - max)/sum - onehot)/rows and, from
    /// thread 0, rowLoss = log(sum) + max - x[label].
    /// </summary>
    private static void SoftmaxCrossEntropyKernel(ArrayView<float> dlogits, ArrayView<float> rowLoss, ArrayView<float> logits,
        ArrayView<int> labels, int rows, int cols)
    {
        var red = SharedMemory.Allocate<float>(MaxGroup);
        int t = Group.IdxX, gs = Group.DimX, r = Grid.IdxX;
        long row = (long)r * cols;
        int label = labels[r];
        bool valid = label >= 0 && label < cols;
        int safeLabel = valid ? label : 0; // no out-of-bounds read if the select evaluates both sides

        float m = float.NegativeInfinity;
        for (int j = t; j < cols; j += gs) m = MathF.Max(m, logits[row + j]);
        m = GroupReduce.Max(red, m);

        float sum = 0f;
        for (int j = t; j < cols; j += gs) sum += MathF.Exp(logits[row + j] - m);
        sum = GroupReduce.Sum(red, sum);
        float inv = 1f / sum, invRows = 1f / rows;
        for (int j = t; j < cols; j += gs)
        {
            float prob = MathF.Exp(logits[row + j] - m) * inv;
            dlogits[row + j] = valid ? (prob - (j == label ? 1f : 0f)) * invRows : float.NaN;
        }
        if (t == 0) rowLoss[r] = valid ? MathF.Log(sum) + m - logits[row + safeLabel] : float.NaN;
    }
}
