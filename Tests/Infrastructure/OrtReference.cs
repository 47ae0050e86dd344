using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Tp7.Tests.Infrastructure;

/// <summary>
/// ONNX Runtime as the reference for imported models: runs a file one sample at a time (files that fix the batch at 1
/// are run as they are) and can expose any intermediate value as an extra graph output, so a test compares every
/// value it asks for, not just the last one.
/// </summary>
public sealed class OrtReference : IDisposable
{
    readonly InferenceSession session;
    readonly string input;
    readonly long[] inputDims;

    /// <param name="extraOutputs">Value names to add as graph outputs (float tensors).</param>
    public OrtReference(string path, IEnumerable<string>? extraOutputs = null)
    {
        var model = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        foreach (var v in extraOutputs ?? [])
            if (model.Graph.Output.All(o => o.Name != v))
                model.Graph.Output.Add(new global::Onnx.ValueInfoProto
                {
                    Name = v,
                    Type = new global::Onnx.TypeProto { TensorType = new global::Onnx.TypeProto.Types.Tensor { ElemType = 1 } },
                });
        var options = new SessionOptions { IntraOpNumThreads = Environment.ProcessorCount, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        session = new InferenceSession(model.ToByteArray(), options);
        input = model.Graph.Input.First(i => model.Graph.Initializer.All(t => t.Name != i.Name)).Name;
        inputDims = model.Graph.Input.First(i => i.Name == input).Type.TensorType.Shape.Dim.Select(d => d.DimValue > 0 ? d.DimValue : 1).ToArray();
    }

    /// <summary>Runs <paramref name="n"/> samples (N, per-sample) one by one; each output comes back as (N, per-sample).</summary>
    public Dictionary<string, float[]> Run(float[] x, int n, IReadOnlyList<string> outputs)
    {
        long per = x.Length / n;
        var parts = outputs.ToDictionary(o => o, _ => new List<float>());
        for (int i = 0; i < n; i++)
        {
            var dims = inputDims.Select(d => (int)d).ToArray();
            dims[0] = 1;
            var t = new DenseTensor<float>(x.AsMemory((int)(i * per), (int)per), dims);
            using var result = session.Run([NamedOnnxValue.CreateFromTensor(input, t)], outputs);
            foreach (var r in result) parts[r.Name].AddRange(r.AsTensor<float>().ToArray());
        }
        return parts.ToDictionary(p => p.Key, p => p.Value.ToArray());
    }

    public void Dispose() => session.Dispose();
}
