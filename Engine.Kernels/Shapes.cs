namespace Tp7.Engine.Kernels;

/// <summary>
/// A 2-D convolution over NCHW input with (K, C/Groups, R, S) weights (OIHW per group). Products that index whole
/// tensors are 64-bit: VGG16's conv1 im2col at batch 64 has 1.85e9 elements.
/// PadH/PadW are the top/left pads; PadBottom/PadRight the bottom/right ones, negative meaning "same as the begin
/// pad" (so every older call site stays symmetric). Dilation spreads the filter taps (ONNX/PyTorch dilation), and
/// Groups splits the channels: output channel k sees input channels [g·C/G, (g+1)·C/G) with g = k / (K/G).
/// </summary>
public readonly record struct ConvShape(
    int N, int C, int H, int W,       // input (N, C, H, W)
    int K, int R, int S,              // weights (K, C/Groups, R, S)
    int StrideH = 1, int StrideW = 1,
    int PadH = 0, int PadW = 0,
    int PadBottom = -1, int PadRight = -1,
    int DilationH = 1, int DilationW = 1,
    int Groups = 1)
{
    public int PadEndH => PadBottom < 0 ? PadH : PadBottom;
    public int PadEndW => PadRight < 0 ? PadW : PadRight;
    /// <summary>Rows and columns of input one filter spans: DilationH·(R-1)+1 and DilationW·(S-1)+1.</summary>
    public int ExtentH => DilationH * (R - 1) + 1;
    public int ExtentW => DilationW * (S - 1) + 1;
    /// <summary>Input channels each output channel reads, C / Groups.</summary>
    public int GroupChannels => C / Groups;
    /// <summary>Output channels of each group, K / Groups.</summary>
    public int GroupOutChannels => K / Groups;
    /// <summary>Every kernel version computes it: one group, no dilation (padding may be asymmetric).</summary>
    public bool IsDense => Groups == 1 && DilationH == 1 && DilationW == 1;
    public bool IsSymmetric => PadEndH == PadH && PadEndW == PadW;

    // A filter larger than the padded input gives no output; integer division alone would round -1/2 up to 0.
    public int OutH => OutSize(H, PadH, PadEndH, ExtentH, StrideH);
    public int OutW => OutSize(W, PadW, PadEndW, ExtentW, StrideW);
    static int OutSize(int size, int begin, int end, int extent, int stride)
    {
        long span = (long)size + begin + end - extent;
        return span < 0 ? 0 : (int)(span / stride + 1);
    }

    public long InputLength => (long)N * C * H * W;
    public long WeightLength => (long)K * GroupChannels * R * S;
    public long OutputLength => (long)N * K * OutH * OutW;
    /// <summary>Multiply-adds counted as 2 FLOPs each, bias and ReLU ignored.</summary>
    public double ForwardFlops => 2.0 * N * K * OutH * OutW * GroupChannels * R * S;
    public double ForwardBytes => 4.0 * (InputLength + WeightLength + K + OutputLength);
    /// <summary>dx = conv_transpose(dy, w): the forward's multiply-adds, 2 FLOPs each.</summary>
    public double BackwardDataFlops => ForwardFlops;
    /// <summary>dw += dy x im2col(x)ᵀ: the forward's multiply-adds, 2 FLOPs each (db's sums ignored).</summary>
    public double BackwardWeightFlops => ForwardFlops;
    /// <summary>Reads dy and w, writes dx.</summary>
    public double BackwardDataBytes => 4.0 * (OutputLength + WeightLength + InputLength);
    /// <summary>Reads dy and x, reads and writes dw and db (they accumulate).</summary>
    public double BackwardWeightBytes => 4.0 * (OutputLength + InputLength + 2 * (WeightLength + K));

    /// <summary>
    /// The one definition of a valid convolution, checked by every conv entry point (host and ILGPU, forward and
    /// backward): positive sizes, strides and dilations, non-negative padding, channels divisible by the groups,
    /// a non-empty output, and a reduction length C*R*S that fits the kernels' 32-bit index.
    /// </summary>
    public void Validate()
    {
        if (N <= 0 || C <= 0 || H <= 0 || W <= 0 || K <= 0 || R <= 0 || S <= 0 || StrideH <= 0 || StrideW <= 0
            || PadH < 0 || PadW < 0 || DilationH <= 0 || DilationW <= 0 || Groups <= 0 || C % Groups != 0 || K % Groups != 0
            || (long)H + PadH + PadEndH < (long)DilationH * (R - 1) + 1 || (long)W + PadW + PadEndW < (long)DilationW * (S - 1) + 1
            || OutH <= 0 || OutW <= 0 || (long)C * R * S > int.MaxValue)
            throw new ArgumentException($"conv2d: invalid shape {this}");
    }

    public static ConvShape Square(int n, int c, int h, int w, int k, int kernel, int stride = 1, int pad = 0)
        => new(n, c, h, w, k, kernel, kernel, stride, stride, pad, pad);

    public override string ToString()
        => $"conv N={N} C={C} H={H} W={W} -> K={K} {R}x{S} stride {StrideH}x{StrideW} pad "
           + (IsSymmetric ? $"{PadH}x{PadW}" : $"[{PadH},{PadW},{PadEndH},{PadEndW}]")
           + (DilationH != 1 || DilationW != 1 ? $" dilation {DilationH}x{DilationW}" : "")
           + (Groups != 1 ? $" groups {Groups}" : "")
           + $" out {OutH}x{OutW}";
}

/// <summary>
/// Max or average pooling over NCHW. Padding counts as -inf for max pooling. PadH/PadW are the top/left pads,
/// PadBottom/PadRight the bottom/right ones (negative: same as the begin pad). CeilMode rounds the output size up,
/// ONNX's and PyTorch's rule: the last window must still start inside the input or the top/left padding.
/// </summary>
public readonly record struct PoolShape(
    int N, int C, int H, int W,
    int KernelH, int KernelW,
    int StrideH, int StrideW,
    int PadH = 0, int PadW = 0,
    int PadBottom = -1, int PadRight = -1,
    int DilationH = 1, int DilationW = 1,
    bool CeilMode = false)
{
    public int PadEndH => PadBottom < 0 ? PadH : PadBottom;
    public int PadEndW => PadRight < 0 ? PadW : PadRight;
    public int OutH => OutSize(H, PadH, PadEndH, KernelH, DilationH, StrideH, CeilMode);
    public int OutW => OutSize(W, PadW, PadEndW, KernelW, DilationW, StrideW, CeilMode);
    public long InputLength => (long)N * C * H * W;
    public long OutputLength => (long)N * C * OutH * OutW;
    public double Flops => (double)OutputLength * KernelH * KernelW;
    public double Bytes => 4.0 * (InputLength + OutputLength);

    /// <summary>PyTorch's pooling_output_shape: floor or ceil of (size + pads - extent) / stride, plus one, minus one
    /// when ceil mode would start the last window past the input and its begin padding.</summary>
    static int OutSize(int size, int begin, int end, int kernel, int dilation, int stride, bool ceil)
    {
        long span = (long)size + begin + end - ((long)dilation * (kernel - 1) + 1);
        if (span < 0 || stride <= 0) return 0;
        long o = (ceil ? (span + stride - 1) / stride : span / stride) + 1;
        if (ceil && (o - 1) * stride >= (long)size + begin) o--;
        return (int)o;
    }

    /// <summary>Positive sizes, strides and dilations, non-negative pads, a non-empty output: checked by every pooling entry point.</summary>
    public void Validate()
    {
        if (N <= 0 || C <= 0 || H <= 0 || W <= 0 || KernelH <= 0 || KernelW <= 0 || StrideH <= 0 || StrideW <= 0
            || PadH < 0 || PadW < 0 || DilationH <= 0 || DilationW <= 0 || OutH <= 0 || OutW <= 0)
            throw new ArgumentException($"pool: invalid shape {this}");
    }
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
