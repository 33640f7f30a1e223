"""The ROS 2 node (docs/robotics.md): `python -m depthart.ros2 --ros-args -p bundle:=bundle/ ...`.

Subscribes to `image` (sensor_msgs/Image, or CompressedImage when the topic ends in /compressed) and its
camera_info sibling; publishes /depth/image (32FC1), /depth/color (bgr8) and /depth/points (PointCloud2)
with the input's stamp and frame id. Parameters: bundle, backend (ort|trt), device, image_topic,
camera_info_topic, intrinsics (fx,fy,cx,cy or a calibration YAML), fov, camera_height, camera_pitch
(metric depth; 0 = off). Every conversion (decoding, intrinsics, the metric fit, the messages) is the bag
path's (runtime/robot.py), tested without ROS; only this thin rclpy layer is untested here.
Frames are handled one at a time with a queue depth of 1, so a slow model drops stale frames.
"""

from __future__ import annotations

import array
import sys


def main(argv=None):
    try:
        import rclpy
        from builtin_interfaces.msg import Time
        from rclpy.node import Node
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
        from std_msgs.msg import Header
    except ImportError:
        print("depthart.ros2 needs ROS 2 (rclpy and sensor_msgs): source your ROS 2 setup first; "
              "for bags without ROS use `depthart run BAG --topic ...`", file=sys.stderr)
        return 1

    from .errors import DepthartError
    from .runtime import DepthRuntime, intrinsics as intr, robot
    from .runtime.metric import MetricScaler

    class DepthNode(Node):
        def __init__(self):
            super().__init__("depthart")
            p = {name: self.declare_parameter(name, default).value for name, default in (
                ("bundle", "bundle"), ("backend", "ort"), ("device", "cpu"), ("image_topic", "image"),
                ("camera_info_topic", ""), ("intrinsics", ""), ("fov", 60.0), ("camera_height", 0.0),
                ("camera_pitch", float("nan")))}
            rt = DepthRuntime(p["bundle"], backend=p["backend"], device=p["device"])
            scaler = None
            if p["camera_height"] > 0:
                pitch = p["camera_pitch"]
                scaler = MetricScaler(height=p["camera_height"], pitch_deg=None if pitch != pitch else pitch)
            k = intr.parse(p["intrinsics"]) if p["intrinsics"] else None
            self.pipeline = robot.DepthPipeline(rt, k, p["fov"], scaler)
            self.types = robot.MessageTypes(Header, Time, Image, PointField, PointCloud2,
                                            data=lambda a: array.array("B", a.tobytes()))
            self.k = None
            topic = p["image_topic"]
            compressed = topic.rstrip("/").endswith("compressed")
            self.msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
            self.create_subscription(CompressedImage if compressed else Image, topic, self.on_image, 1)
            self.create_subscription(CameraInfo, p["camera_info_topic"] or robot.camera_info_topic(topic),
                                     self.on_info, 1)
            self.pubs = {key: self.create_publisher(PointCloud2 if key == "points" else Image, name, 1)
                         for key, name in robot.OUTPUT_TOPICS.items()}
            self.get_logger().info(f"depthart: {rt.describe()}; {topic} -> {', '.join(robot.OUTPUT_TOPICS.values())}")

        def on_info(self, msg):
            try:
                self.k = robot.camera_info_intrinsics(msg)
            except DepthartError as e:
                self.get_logger().warn(str(e), throttle_duration_sec=10.0)

        def on_image(self, msg):
            try:
                df = self.pipeline(robot.to_rgb(msg, self.msgtype), self.k)
            except DepthartError as e:
                self.get_logger().warn(str(e), throttle_duration_sec=5.0)
                return
            if df.fit is not None and not df.fit.ok:
                self.get_logger().warn(f"no metric scale: {df.fit.reason}", throttle_duration_sec=5.0)
            for key, m in robot.frame_messages(self.types, msg.header, df).items():
                self.pubs[key].publish(m)

    rclpy.init(args=argv)
    try:
        node = DepthNode()
    except DepthartError as e:
        print(f"error: {e}", file=sys.stderr)
        rclpy.shutdown()
        return 1
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
