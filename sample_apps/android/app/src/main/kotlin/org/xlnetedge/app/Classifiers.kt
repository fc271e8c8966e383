package org.xlnetedge.app

import android.content.Context
import org.json.JSONArray
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.nnapi.NnApiDelegate
import org.xlnetedge.tokenizer.Encoded
import java.io.File
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/** Where a .tflite model runs. NNAPI falls back to CPU for ops the phone's driver lacks. */
enum class Backend { NNAPI, XNNPACK, CPU }

/** One forward pass: tokenizer output in, one logit per label out. */
interface Classifier : AutoCloseable {
    fun logits(input: Encoded): FloatArray
}

/** Labels in output order, from the bundle's labels.json (a JSON array of strings). */
fun loadLabels(context: Context): List<String> {
    val array = JSONArray(context.assets.open("labels.json").bufferedReader().readText())
    return List(array.length()) { array.getString(it) }
}

/** Copy a bundled asset to app storage once: TFLite maps it and ExecuTorch needs a real file path. */
fun assetFile(context: Context, name: String): File {
    val out = File(context.filesDir, name)
    if (!out.exists()) context.assets.open(name).use { input -> out.outputStream().use { input.copyTo(it) } }
    return out
}

/**
 * LiteRT (TFLite) classifier. Inputs are fed by the model's own input names when they are
 * input_ids / attention_mask / token_type_ids, else in that order; int32 or int64 tensors both work.
 */
class LiteRtClassifier(model: File, backend: Backend, private val numLabels: Int) : Classifier {
    private val nnapi: NnApiDelegate? = if (backend == Backend.NNAPI) NnApiDelegate() else null
    private val interpreter: Interpreter

    init {
        val options = Interpreter.Options().setNumThreads(4).setUseXNNPACK(backend == Backend.XNNPACK)
        nnapi?.let { options.addDelegate(it) }
        interpreter = Interpreter(mapModel(model), options)
    }

    override fun logits(input: Encoded): FloatArray {
        val byName = mapOf(
            "input_ids" to input.inputIds, "attention_mask" to input.attentionMask, "token_type_ids" to input.tokenTypeIds,
        )
        val ordered = listOf(input.inputIds, input.attentionMask, input.tokenTypeIds)
        val inputs = Array<Any>(interpreter.inputTensorCount) { index ->
            val tensor = interpreter.getInputTensor(index)
            val values = byName.entries.firstOrNull { tensor.name().contains(it.key) }?.value ?: ordered[index]
            toBuffer(values, tensor.dataType() == org.tensorflow.lite.DataType.INT64)
        }
        val output = Array(1) { FloatArray(numLabels) }
        interpreter.runForMultipleInputsOutputs(inputs, mapOf(0 to output))
        return output[0]
    }

    override fun close() {
        interpreter.close()
        nnapi?.close()
    }

    private fun mapModel(file: File): MappedByteBuffer =
        FileInputStream(file).channel.use { it.map(FileChannel.MapMode.READ_ONLY, 0, it.size()) }

    private fun toBuffer(values: IntArray, asLong: Boolean): ByteBuffer {
        val buffer = ByteBuffer.allocateDirect(values.size * if (asLong) 8 else 4).order(ByteOrder.nativeOrder())
        values.forEach { if (asLong) buffer.putLong(it.toLong()) else buffer.putInt(it) }
        buffer.rewind()
        return buffer
    }
}

/** ExecuTorch classifier for the bundle's .pte (XNNPACK-delegated at export time). Inputs are int64 [1, L]. */
class ExecuTorchClassifier(model: File, private val inputCount: Int = 2) : Classifier {
    private val module: Module = Module.load(model.absolutePath)

    override fun logits(input: Encoded): FloatArray {
        val shape = longArrayOf(1, input.inputIds.size.toLong())
        val all = listOf(input.inputIds, input.attentionMask, input.tokenTypeIds).take(inputCount)
        val values = all.map { ids -> EValue.from(Tensor.fromBlob(LongArray(ids.size) { ids[it].toLong() }, shape)) }
        return module.forward(*values.toTypedArray())[0].toTensor().dataAsFloatArray
    }

    override fun close() = module.destroy()
}
