using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using ILGPU;
using ILGPU.Runtime;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Training;

/// <summary>What one forward + backward pass measured.</summary>
public sealed record PassResult(double Loss, float[] Logits, Dictionary<string, float[]> Values, Dictionary<string, float[]> Gradients);

/// <summary>
/// Trains a network's trainable suffix: forward in train mode, fused softmax + cross-entropy (mean), backward into
/// the gradient block, optimiser step. Dropout masks come from (seed, step), so a resumed run draws the same masks.
/// </summary>
public sealed class Trainer : IDisposable
{
    ILGPU.Runtime.MemoryBuffer1D<int, ILGPU.Stride1D.Dense>? gpuLabels;
    ILGPU.Runtime.MemoryBuffer1D<float, ILGPU.Stride1D.Dense>? gpuRowLoss;

    public Network Network { get; }
    public Optimizer? Optimizer { get; }
    public IReadOnlySet<string> Trainable { get; }
    public ulong Seed { get; }

    public Trainer(Network network, IReadOnlyCollection<string> trainable, Func<ParameterStore, Optimizer>? optimizer, ulong seed = 0)
    {
        Network = network;
        network.Parameters.SetTrainable(trainable);
        Trainable = trainable.ToHashSet();
        Optimizer = optimizer?.Invoke(network.Parameters);
        Seed = seed;
    }

    /// <summary>The training plan for a batch shape (cached by the network).</summary>
    public ExecutionPlan Plan(Shape inputShape, IReadOnlyCollection<string>? outputs = null, IReadOnlyCollection<string>? gradients = null, bool noFusion = false)
        => Network.Plan(new PlanRequest(inputShape, outputs ?? [], Training: true, Trainable: Trainable, GradientOutputs: gradients, NoFusion: noFusion));

    /// <summary>
    /// Forward and backward on one batch: parameter gradients accumulate into the block (call
    /// <see cref="ParameterStore.ZeroGrad"/> first for a fresh step). Returns the mean loss and what was asked for.
    /// </summary>
    public PassResult ForwardBackward(ReadOnlySpan<float> input, Shape inputShape, ReadOnlySpan<int> labels, long step,
        IReadOnlyCollection<string>? outputs = null, IReadOnlyCollection<string>? gradients = null, bool noFusion = false)
    {
        int n = inputShape[0];
        if (labels.Length != n) throw new ArgumentException($"{labels.Length} labels for a batch of {n}");
        var plan = Plan(inputShape, outputs, gradients, noFusion);
        ulong seed = Seed * 0x100000001B3UL + (ulong)step;
        var values = new Dictionary<string, float[]>();
        var exec = Network.Executor;
        exec.Forward(plan, input, values, 0, seed);
        var (logits, dlogits) = exec.OutputAndGradient(plan);
        double loss = SoftmaxCrossEntropy(dlogits, logits, labels);
        // Before backward: the logits' memory is free for gradients once the loss has read them.
        var hostLogits = Network.Device.Download(logits.Data);
        var grads = new Dictionary<string, float[]>();
        exec.Backward(plan, gradients != null ? grads : null, seed);
        return new PassResult(loss, hostLogits, values, grads);
    }

    /// <summary>ZeroGrad, forward, backward, one optimiser step at <paramref name="lr"/>; throws on a non-finite loss, naming the step.</summary>
    public double Step(ReadOnlySpan<float> input, Shape inputShape, ReadOnlySpan<int> labels, long step, double lr)
    {
        if (Optimizer == null) throw new InvalidOperationException("this trainer has no optimiser");
        Network.Parameters.ZeroGrad();
        var r = ForwardBackward(input, inputShape, labels, step);
        if (!double.IsFinite(r.Loss))
            throw new ArithmeticException($"loss is {r.Loss} at step {step + 1}: training diverged (try a smaller --lr)");
        Optimizer.Step(lr);
        return r.Loss;
    }

    double SoftmaxCrossEntropy(Tensor dlogits, Tensor logits, ReadOnlySpan<int> labels)
    {
        int rows = logits.Shape[0], cols = logits.Shape[1];
        foreach (var y in labels)
            if (y < 0 || y >= cols) throw new ArgumentException($"label {y} is outside the {cols} classes of the network's output");
        var device = Network.Device;
        if (device is HostDevice)
            return Loss.SoftmaxCrossEntropyHost(HostDevice.Span(dlogits.Data), HostDevice.Span(logits.Data), labels, rows, cols);
        var d = (IlgpuDevice)device;
        if (gpuLabels == null || gpuLabels.Length < rows)
        {
            gpuLabels?.Dispose(); gpuRowLoss?.Dispose();
            gpuLabels = d.Accelerator.Allocate1D<int>(rows);
            gpuRowLoss = d.Accelerator.Allocate1D<float>(rows);
        }
        var lv = gpuLabels.View.SubView(0, rows);
        lv.CopyFromCPU(d.Accelerator.DefaultStream, labels.ToArray());
        var rl = gpuRowLoss!.View.SubView(0, rows);
        d.Kernels(a => new LossGpu(a)).SoftmaxCrossEntropy(IlgpuDevice.View(dlogits.Data), rl, IlgpuDevice.View(logits.Data), lv, rows, cols);
        var host = new float[rows];
        rl.CopyToCPU(d.Accelerator.DefaultStream, host);
        d.Synchronize();
        double sum = 0;
        foreach (var v in host) sum += v;
        return sum / rows;
    }

    public void Dispose()
    {
        Optimizer?.Dispose();
        gpuLabels?.Dispose();
        gpuRowLoss?.Dispose();
    }
}
