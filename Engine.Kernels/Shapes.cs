namespace Tp7.Engine.Kernels;

/// <summary>
/// A 2-D convolution over NCHW input with OIHW weights. Products that index whole tensors are 64-bit:
/// VGG16's conv1 im2col at batch 64 has 1.85e9 elements.
/// </summary>
public readonly record struct ConvShape(
    int N, int C, int H, int W,       // input (N, C, H, W)
    int K, int R, int S,              // weights (K, C, R, S)
    int StrideH = 1, int StrideW = 1,
    int PadH = 0, int PadW = 0)
{
    // A filter larger than the padded input gives no output; integer division alone would round -1/2 up to 0.
    public int OutH => H + 2 * PadH < R ? 0 : (H + 2 * PadH - R) / StrideH + 1;
    public int OutW => W + 2 * PadW < S ? 0 : (W + 2 * PadW - S) / StrideW + 1;
    public long InputLength => (long)N * C * H * W;
    public long WeightLength => (long)K * C * R * S;
    public long OutputLength => (long)N * K * OutH * OutW;
    /// <summary>Multiply-adds counted as 2 FLOPs each, bias and ReLU ignored.</summary>
    public double ForwardFlops => 2.0 * N * K * OutH * OutW * C * R * S;
    public double ForwardBytes => 4.0 * (InputLength + WeightLength + K + OutputLength);
    /// <summary>dx = conv_transpose(dy, w): the forward's multiply-adds, 2 FLOPs each.</summary>
    public double BackwardDataFlops => 2.0 * N * K * OutH * OutW * C * R * S;
    /// <summary>dw += dy x im2col(x)ᵀ: the forward's multiply-adds, 2 FLOPs each (db's sums ignored).</summary>
    public double BackwardWeightFlops => 2.0 * N * K * OutH * OutW * C * R * S;
    /// <summary>Reads dy and w, writes dx.</summary>
    public double BackwardDataBytes => 4.0 * (OutputLength + WeightLength + InputLength);
    /// <summary>Reads dy and x, reads and writes dw and db (they accumulate).</summary>
    public double BackwardWeightBytes => 4.0 * (OutputLength + InputLength + 2 * (WeightLength + K));

    /// <summary>
    /// The one definition of a valid convolution, checked by every conv entry point (host and ILGPU, forward and
    /// backward): positive sizes and strides, non-negative padding, a non-empty output, and a reduction length
    /// C*R*S that fits the kernels' 32-bit index.
    /// </summary>
    public void Validate()
    {
        if (N <= 0 || C <= 0 || H <= 0 || W <= 0 || K <= 0 || R <= 0 || S <= 0 || StrideH <= 0 || StrideW <= 0
            || PadH < 0 || PadW < 0 || (long)H + 2L * PadH < R || (long)W + 2L * PadW < S || OutH <= 0 || OutW <= 0
            || (long)C * R * S > int.MaxValue)
            throw new ArgumentException($"conv2d: invalid shape {this}");
    }

    public static ConvShape Square(int n, int c, int h, int w, int k, int kernel, int stride = 1, int pad = 0)
        => new(n, c, h, w, k, kernel, kernel, stride, stride, pad, pad);

    public override string ToString()
        => $"conv N={N} C={C} H={H} W={W} -> K={K} {R}x{S} stride {StrideH}x{StrideW} pad {PadH}x{PadW} out {OutH}x{OutW}";
}

/// <summary>Max or average pooling over NCHW. Padding counts as -inf for max pooling.</summary>
public readonly record struct PoolShape(
    int N, int C, int H, int W,
    int KernelH, int KernelW,
    int StrideH, int StrideW,
    int PadH = 0, int PadW = 0)
{
    public int OutH => (H + 2 * PadH - KernelH) / StrideH + 1;
    public int OutW => (W + 2 * PadW - KernelW) / StrideW + 1;
    public long InputLength => (long)N * C * H * W;
    public long OutputLength => (long)N * C * OutH * OutW;
    public double Flops => (double)OutputLength * KernelH * KernelW;
    public double Bytes => 4.0 * (InputLength + OutputLength);
}

/// <summary>
/// Row-major C (M x N) = alpha * op(A) (M x K) * op(B) (K x N) + beta * C, BLAS conventions:
/// op(A) = A when !TransA (A stored M x K, leading dimension Lda) else A^T (A stored K x M).
/// </summary>
public readonly record struct GemmShape(
    int M, int N, int K,
    bool TransA = false, bool TransB = false,
    int Lda = 0, int Ldb = 0, int Ldc = 0,
    float Alpha = 1f, float Beta = 0f)
{
    public int LdaOrDefault => Lda != 0 ? Lda : (TransA ? M : K);
    public int LdbOrDefault => Ldb != 0 ? Ldb : (TransB ? K : N);
    public int LdcOrDefault => Ldc != 0 ? Ldc : N;
    public double Flops => 2.0 * M * N * K;
    public double Bytes => 4.0 * ((long)M * K + (long)K * N + 2L * M * N);
}
